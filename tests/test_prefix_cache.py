"""Shared-prefix caching gives the same vectors as running every token, and is used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmvec import Encoder
from llmvec.encoding.pooling import POOLING_METHODS
from llmvec.encoding.prefix_cache import default_prefix_caching
from llmvec.testing import TINY_ARCHITECTURES, row_cosines

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "",
    "The essence of a sentence is often captured by its main subjects and actions while",
    '"quoted" text right after the template quote',
]
INSTRUCTION = "Given a question, retrieve passages that answer the question"


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize(
    ("template", "instruction"), [("ke", None), ("prompteol", INSTRUCTION), (None, INSTRUCTION)]
)
def test_cached_prefix_gives_the_same_vectors(
    tiny_models: dict[str, Path],
    arch: str,
    side: str,
    template: str | None,
    instruction: str | None,
) -> None:
    path = str(tiny_models[arch])
    cached = Encoder(
        path,
        padding_side=side,
        template=template,
        query_instruction=instruction,
        prefix_caching=True,
    )
    plain = Encoder(
        path,
        padding_side=side,
        template=template,
        query_instruction=instruction,
        prefix_caching=False,
    )
    for method in POOLING_METHODS:
        for layer in (1, -1):
            kwargs = {"pooling_method": method, "layer_index": layer, "batch_size": 2}
            got = cached.encode_queries(TEXTS, **kwargs)
            expected = plain.encode_queries(TEXTS, **kwargs)
            assert row_cosines(got, expected).min() > 0.9999, (method, layer)
    assert cached._prefix_cache, "the shared prefix was never cached"
    assert not plain._prefix_cache


def test_cache_is_reused_per_instruction(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), template="ke", prefix_caching=True)
    encoder.encode(TEXTS)
    encoder.encode(["another batch of text"])
    assert len(encoder._prefix_cache) == 1
    encoder.encode_queries(["q"], instruction=INSTRUCTION)
    assert len(encoder._prefix_cache) == 2


def test_caching_is_on_by_default_on_a_cpu_and_off_on_a_gpu(tiny_llama: Path) -> None:
    assert default_prefix_caching(torch.device("cpu"))
    assert not default_prefix_caching(torch.device("cuda"))
    assert not default_prefix_caching(torch.device("mps"))
    encoder = Encoder(str(tiny_llama), template="ke", device="cpu")
    assert encoder.prefix_caching
    encoder.encode(TEXTS)
    assert encoder._prefix_cache


def test_no_cache_for_encoder_models(minilm: Encoder) -> None:
    minilm.encode(["hello world", "another"], prompt_template="prompteol")
    assert not minilm._prefix_cache
