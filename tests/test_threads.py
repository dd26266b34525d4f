"""One encoder shared by many threads: every call returns the vectors it returns alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest

from llmvec import Encoder

THREADS = 8
TEXTS = [
    "A cat sleeps on the warm windowsill.",
    "Stock markets fell sharply on Monday.",
    "The recipe needs two eggs and some flour.",
    "Volcanoes erupt when magma rises.",
]
#: Per-call settings that take each path of the backend: the last block narrowed to one token
#: (last_token), a cached template prefix stopped before the last block (ke, layer -2), a pass
#: stopped early (layer 3), and the whole model (mean), which only the others' passes disturb.
RECIPES: dict[str, dict[str, Any]] = {
    "last_token": {"pooling_method": "last_token"},
    "ke": {"prompt_template": "ke"},
    "layer3": {"layer_index": 3},
    "mean": {"pooling_method": "mean"},
}
#: What each test's threads run: one recipe in all, or all four side by side (two threads each).
SCHEDULES = {
    **{name: [name] * THREADS for name in ("last_token", "ke", "layer3")},
    "mixed": [*RECIPES, *RECIPES],
}

T = TypeVar("T")


def run_together(calls: list[Callable[[], T]]) -> list[T]:
    """Run each call in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result() for future in futures]


def thread_texts(thread: int) -> list[str]:
    """Each thread's own texts (three of the four, so mixed-up results show)."""
    return [text for index, text in enumerate(TEXTS) if index != thread % len(TEXTS)]


def encode_call(encoder: Encoder, texts: list[str], recipe: dict[str, Any]) -> Callable[[], Any]:
    return lambda: encoder.encode(texts, **recipe)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_concurrent_calls_give_the_sequential_vectors(smollm2: Encoder, schedule: str) -> None:
    calls = [
        encode_call(smollm2, thread_texts(thread), RECIPES[name])
        for thread, name in enumerate(SCHEDULES[schedule])
    ]
    together = run_together(calls)
    for call, vectors in zip(calls, together, strict=True):
        np.testing.assert_allclose(vectors, call(), atol=1e-5)
