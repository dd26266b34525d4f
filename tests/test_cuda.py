"""The GPU path on a real CUDA device: every recipe gives the CPU's vectors. Skipped where no
CUDA device is present (CI has none); run on the GPU machine as
``pytest tests/test_cuda.py`` (the issue notes record those runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from llmvec import Encoder
from llmvec.bench import PeakMemory
from llmvec.testing import TINY_ARCHITECTURES, record_forward_passes, row_cosines

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "a much longer sentence about nothing in particular " * 5,
    "two words",
    "Scientists found that proteins fold; markets fell 3% on Monday.",
]

#: Recipes that take different paths: unmasked right padding, a template (uncached on a GPU by
#: default) and a cached shared prefix with the forward narrowed to the last token, an early
#: layer, left padding, bidirectional attention, latent-attention pooling, an instruction kept
#: out of pooling.
RECIPES: dict[str, dict[str, Any]] = {
    "mean": {"pooling": "mean"},
    "ke": {"template": "ke"},
    "ke-cached-prefix": {"template": "ke", "prefix_caching": True},
    "layer-1-last-token": {"pooling": "last_token", "layer": 1},
    "left-padding-weighted-mean": {"pooling": "weighted_mean", "padding_side": "left"},
    "bidirectional-mean": {"pooling": "mean", "bidirectional": True},
    "latent-attention": {"pooling": "latent_attention"},
    "instructed-query": {"pooling": "last_token", "query_instruction": "Retrieve passages"},
}


def _vectors(path: Path, device: str, dtype: str, recipe: dict[str, Any]) -> Any:
    encoder = Encoder(str(path), device=device, dtype=dtype, batch_size=2, **recipe)
    if "query_instruction" in recipe:
        return encoder.encode_queries(TEXTS)
    return encoder.encode(TEXTS)


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_cuda_float32_equals_cpu(tiny_models: dict[str, Path], arch: str, recipe: str) -> None:
    settings = RECIPES[recipe]
    cpu = _vectors(tiny_models[arch], "cpu", "float32", settings)
    cuda = _vectors(tiny_models[arch], "cuda", "float32", settings)
    assert row_cosines(cuda, cpu).min() > 0.9999


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_cuda_bfloat16_stays_close_to_float32(tiny_models: dict[str, Path], arch: str) -> None:
    cpu = _vectors(tiny_models[arch], "cpu", "float32", RECIPES["ke-cached-prefix"])
    cuda = _vectors(tiny_models[arch], "cuda", "bfloat16", RECIPES["ke-cached-prefix"])
    assert row_cosines(cuda, cpu).min() > 0.99


def test_cuda_is_the_default_with_bfloat16(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama))
    backend = encoder.backend
    assert backend.device.type == "cuda"  # type: ignore[union-attr]
    assert backend.dtype == torch.bfloat16  # type: ignore[union-attr]
    assert encoder.encode(TEXTS).dtype.name == "float32"  # numpy out, whatever the compute dtype


def test_peak_memory_reads_the_real_cuda_counters(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), device="cuda", pooling="mean", batch_size=64)
    memory = PeakMemory(torch.device("cuda"))
    with memory:  # 64 x 400 tokens: megabytes of activations above the weights
        encoder.encode(["word " * 400] * 64)
    report = memory.report()
    assert report["peak_mib"] > 0 and report["added_mib"] > 0


def test_compiled_blocks_on_cuda_give_the_eager_vectors(tiny_llama: Path) -> None:
    for recipe in ("mean", "ke"):
        eager = _vectors(tiny_llama, "cuda", "float32", RECIPES[recipe])
        compiled = _vectors(tiny_llama, "cuda", "float32", {**RECIPES[recipe], "compile": True})
        assert row_cosines(compiled, eager).min() > 0.9999


def test_short_sentences_run_in_the_fewest_passes_on_cuda(tiny_llama: Path) -> None:
    # On a GPU the host's work per pass outweighs the padding a split would save.
    texts = [" ".join(["word"] * (1 + i % 23)) for i in range(250)]
    encoder = Encoder(str(tiny_llama), device="cuda", pooling="mean", batch_size=32)
    with record_forward_passes(encoder, hold_s=0) as log:
        encoder.encode(texts)
    assert len(log.batch_sizes) == -(-250 // 32)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs flash-attn")
@pytest.mark.parametrize(
    "recipe", ["mean", "ke", "left-padding-weighted-mean", "bidirectional-mean"]
)
def test_flash_attention_gives_the_sdpa_vectors(tiny_llama: Path, recipe: str) -> None:
    settings = RECIPES[recipe]
    flash = Encoder(str(tiny_llama), device="cuda", dtype="bfloat16", **settings)
    assert flash.backend.model.config._attn_implementation == "flash_attention_2"  # type: ignore[union-attr]
    sdpa = Encoder(
        str(tiny_llama), device="cuda", dtype="bfloat16", attn_implementation="sdpa", **settings
    )
    assert row_cosines(flash.encode(TEXTS), sdpa.encode(TEXTS)).min() > 0.99
