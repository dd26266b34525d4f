"""Grouped key/value heads stay grouped under a mask on the CPU: the same attention as
transformers' SDPA (which repeats the heads), and the same vectors from a real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from llmvec import Encoder
from llmvec.backends.grouped_sdpa import GROUPED_SDPA, grouped_sdpa_forward
from llmvec.testing import row_cosines

TEXTS = ["A man is playing a guitar.", "Paris", "two words", "a longer sentence " * 6]


class _GroupedAttention(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def _masks(queries: int, keys: int) -> dict[str, torch.Tensor]:
    allowed = torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries)
    allowed = allowed[None, None].repeat(2, 1, 1, 1)
    allowed[1, ..., :3] = False  # left padding in the second row
    allowed[1, 0, :3, 3] = True  # every query sees at least one key
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return {"bool": allowed, "additive": additive}


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_grouped_heads_equal_repeated_heads_under_a_mask(mask_kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 6, 5, 8, generator=generator)
    key = torch.randn(2, 2, 9, 8, generator=generator)
    value = torch.randn(2, 2, 9, 8, generator=generator)
    mask = _masks(5, 9)[mask_kind]
    module = _GroupedAttention()
    got, _ = grouped_sdpa_forward(module, query, key, value, mask, scaling=0.3)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    torch.testing.assert_close(got, expected)


def _key_heads_seen(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(query heads, key heads) of every SDPA call of one encode."""
    seen: list[tuple[int, int]] = []
    sdpa = F.scaled_dot_product_attention

    def recording(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((query.shape[1], key.shape[1]))
        return sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    encoder.encode(TEXTS, batch_size=4)
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize("recipe", [{"template": "ke"}, {"padding_side": "left"}])
def test_masked_cpu_batches_keep_heads_grouped_with_the_same_vectors(
    tiny_llama: Path, recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped = Encoder(str(tiny_llama), device="cpu", **recipe)
    repeated = Encoder(str(tiny_llama), device="cpu", attn_implementation="sdpa", **recipe)
    assert grouped.backend.model.config._attn_implementation == GROUPED_SDPA  # type: ignore[union-attr]
    assert repeated.backend.model.config._attn_implementation == "sdpa"  # type: ignore[union-attr]
    # 4 query heads, 2 key/value heads: transformers repeats them for its masked calls.
    assert 4 in {k for _, k in _key_heads_seen(repeated, monkeypatch)}
    assert {k for _, k in _key_heads_seen(grouped, monkeypatch)} == {2}
    assert row_cosines(grouped.encode(TEXTS), repeated.encode(TEXTS)).min() > 0.99999


def test_a_chosen_attention_is_kept(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), device="cpu", attn_implementation="eager")
    assert encoder.backend.model.config._attn_implementation == "eager"  # type: ignore[union-attr]
