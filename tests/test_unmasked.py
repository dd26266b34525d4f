"""A causal model's right-padded batch runs without a padding mask (its real tokens never see
the padding after them), with the same vectors as a plain unpadded reference; left padding,
bidirectional attention and a model that reads the mask for more than attention keep it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmvec import Encoder
from llmvec.testing import TINY_ARCHITECTURES, row_cosines, unpadded_states

TEXTS = ["A man is playing a guitar.", "Paris", "a much longer sentence " * 6, "two words"]
# Close in length: one padded batch.
PADDED = ["A man is playing a guitar.", "Paris", "two words"]


def _masks_seen(encoder: Encoder, texts: list[str]) -> list[bool]:
    """Per forward pass of ``encoder.encode(texts)``: whether the model got a padding mask
    (once the encoder's one-time probes have run)."""
    encoder.encode(texts)
    seen: list[bool] = []

    def spy(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append(kwargs.get("attention_mask") is not None)

    model = encoder.backend.model  # type: ignore[union-attr]
    handle = model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        encoder.encode(texts)
    finally:
        handle.remove()
    return seen


def _reference(path: Path, encoder: Encoder) -> np.ndarray:
    """One text at a time (no padding at all), mean over the pooled tokens."""
    rows = [
        torch.nn.functional.normalize(states[item.pool_start :].mean(0), dim=0)
        for states, item in zip(
            unpadded_states(path, encoder, TEXTS), encoder.tokenize(TEXTS), strict=True
        )
    ]
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_right_padded_causal_batches_run_unmasked(tiny_models: dict[str, Path], arch: str) -> None:
    path = tiny_models[arch]
    encoder = Encoder(str(path), pooling="mean", prefix_caching=False)
    assert not any(_masks_seen(encoder, TEXTS))
    assert row_cosines(encoder.encode(TEXTS), _reference(path, encoder)).min() > 0.9999


@pytest.mark.parametrize("settings", [{"padding_side": "left"}, {"bidirectional": True}])
def test_left_padding_and_bidirectional_attention_keep_the_mask(
    tiny_llama: Path, settings: dict[str, Any]
) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean", prefix_caching=False, **settings)
    assert _masks_seen(encoder, PADDED) == [True]


def test_a_cached_prefix_keeps_the_mask(tiny_llama: Path) -> None:
    # The new tokens attend to the cached prefix: the causal kernel would align them wrongly.
    encoder = Encoder(str(tiny_llama), template="ke")
    assert _masks_seen(encoder, PADDED) == [True]


def test_a_model_that_reads_the_mask_keeps_it(tiny_llama: Path) -> None:
    """A model whose output changes without the mask (as one that reads it for more than
    attention would) fails the probe: every pass keeps the mask, and the vectors stay right."""
    encoder = Encoder(str(tiny_llama), pooling="mean", prefix_caching=False)
    expected = encoder.encode(TEXTS)
    fresh = Encoder(str(tiny_llama), pooling="mean", prefix_caching=False)
    model = fresh.backend.model  # type: ignore[union-attr]

    def unmasked_differs(
        module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if kwargs.get("attention_mask") is None:
            kwargs["input_ids"] = kwargs["input_ids"].flip(1)
        return args, kwargs

    model.register_forward_pre_hook(unmasked_differs, with_kwargs=True)
    assert _masks_seen(fresh, PADDED) == [True]
    assert fresh.backend._unmasked is False  # type: ignore[union-attr]
    assert row_cosines(fresh.encode(TEXTS), expected).min() > 0.9999
