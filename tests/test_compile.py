"""``compile=True`` runs the parts of every block through ``torch.compile``: the same vectors as
the eager encoder for a plain batch, a cached shared prefix (attention then runs eagerly) and a
narrowed last block, with llmvec's hooks outside the compiled code (no recompiling per call)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

from llmvec import Encoder
from llmvec.bench import run_bench
from llmvec.testing import row_cosines

TEXTS = ["A man is playing a guitar.", "Paris", "a much longer sentence " * 6, "two words"]
RECIPES: list[dict[str, Any]] = [
    {"pooling_method": "mean"},  # right-padded, unmasked, attention compiled
    {"pooling_method": "last_token", "prompt_template": "ke"},  # cached prefix; narrowed
    {"pooling_method": "last_token", "layer_index": 2},  # stops early; narrowed
]


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Compiled code is cached per function across tests; each test starts from none."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_compiled_blocks_give_the_eager_vectors(tiny_models: dict[str, Path], arch: str) -> None:
    path = str(tiny_models[arch])
    eager = Encoder(path)
    compiled = Encoder(path, compile=True)
    assert compiled.backend.compiled  # type: ignore[union-attr]
    assert not eager.backend.compiled  # type: ignore[union-attr]
    before = _graphs()
    for recipe in RECIPES:
        expected = eager.encode(TEXTS, **recipe)
        got = compiled.encode(TEXTS, **recipe)
        assert row_cosines(got, expected).min() > 0.9999, recipe
    assert _graphs() > before, "no compiled code ran"
    # The same shapes again: the hooks (capture, narrowing) do not force new compiles.
    settled = _graphs()
    for recipe in RECIPES:
        compiled.encode(TEXTS, **recipe)
    assert _graphs() == settled


def test_bench_compiles_before_timing_and_says_so(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), compile=True)
    report = run_bench(encoder, TEXTS, chunks=2)
    assert report["compiled"] is True
    assert report["results"]["llmvec"]["flop_per_pass"] > 0
    # Timing starts after the warm-up passes: they compiled every shape the timed passes see.
    settled = _graphs()
    run_bench(encoder, TEXTS, chunks=2)
    assert _graphs() == settled


def test_the_static_backend_refuses_compile() -> None:
    with pytest.raises(TypeError, match="compile"):
        Encoder("wordllama", backend="static", compile=True)


def test_cli_compile_flag(tiny_llama: Path, tmp_path: Path) -> None:
    from llmvec.cli import main

    file = tmp_path / "texts.txt"
    file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "bench.json"
    argv = ["bench", str(file), "--model", str(tiny_llama), "--chunks", "1", "--json", str(output)]
    assert main([*argv, "--compile"]) == 0
    assert json.loads(output.read_text())["compiled"] is True
    assert main(argv) == 0
    assert json.loads(output.read_text())["compiled"] is False
