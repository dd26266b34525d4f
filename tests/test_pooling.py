"""Pooling functions against plain per-row reference implementations."""

from __future__ import annotations

import pytest
import torch

from llmvec.encoding import pooling


def _random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(4, 9, 5, generator=generator)
    mask = torch.zeros(4, 9, dtype=torch.bool)
    mask[0, 1:9] = True  # right-aligned (left padding), first token excluded
    mask[1, 0:3] = True  # left-aligned (right padding)
    mask[2, 4:6] = True  # in the middle (instruction before, padding after)
    mask[3, 8] = True  # a single token
    hidden[1, 3:] = float("nan")  # padding states may be NaN; they must never leak
    return hidden, mask


def _rows(hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [hidden[i][mask[i]] for i in range(hidden.shape[0])]


def test_mean_matches_reference() -> None:
    hidden, mask = _random_batch()
    expected = torch.stack([row.mean(0) for row in _rows(hidden, mask)])
    torch.testing.assert_close(pooling.mean(hidden, mask), expected)


def test_weighted_mean_matches_reference() -> None:
    hidden, mask = _random_batch()
    expected = []
    for row in _rows(hidden, mask):
        weights = torch.arange(1, row.shape[0] + 1, dtype=torch.float32)
        expected.append((row * weights[:, None]).sum(0) / weights.sum())
    torch.testing.assert_close(pooling.weighted_mean(hidden, mask), torch.stack(expected))


def test_first_and_last_token_match_reference() -> None:
    hidden, mask = _random_batch()
    rows = _rows(hidden, mask)
    torch.testing.assert_close(pooling.first_token(hidden, mask), torch.stack([r[0] for r in rows]))
    torch.testing.assert_close(pooling.last_token(hidden, mask), torch.stack([r[-1] for r in rows]))


def test_no_nan_leaks_from_padding() -> None:
    hidden, mask = _random_batch()
    for method in (pooling.mean, pooling.weighted_mean, pooling.last_token, pooling.first_token):
        assert torch.isfinite(method(hidden, mask)).all()


def test_eos_token_pools_at_eos_and_requires_one() -> None:
    hidden, mask = _random_batch()
    ids = torch.full((4, 9), 5)
    ids[0, 6] = 2
    ids[1, 2] = 2
    ids[2, 5] = 2
    ids[3, 8] = 2
    pooled = pooling.eos_token(hidden, mask, ids, eos_token_id=2)
    expected = torch.stack([hidden[0, 6], hidden[1, 2], hidden[2, 5], hidden[3, 8]])
    torch.testing.assert_close(pooled, expected)
    ids[2, 5] = 5
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        pooling.eos_token(hidden, mask, ids, eos_token_id=2)


def test_unknown_pooling_names_allowed() -> None:
    with pytest.raises(ValueError, match="allowed"):
        pooling.validate_pooling("max")


def test_registry_pools_every_method_as_its_function() -> None:
    assert set(pooling.POOLERS) == set(pooling.POOLING_METHODS)
    hidden, mask = _random_batch()
    ids = torch.full((4, 9), 5)
    for name, function in (("mean", pooling.mean), ("weighted_mean", pooling.weighted_mean)):
        pooler = pooling.POOLERS[name]
        assert isinstance(pooler, pooling.MaskPooler) and not pooler.needs_head
        torch.testing.assert_close(pooler(hidden, mask), function(hidden, mask))
    for name, function in (
        ("last_token", pooling.last_token),
        ("first_token", pooling.first_token),
    ):
        pooler = pooling.POOLERS[name]
        assert isinstance(pooler, pooling.PositionPooler)
        index = pooler.index(mask, ids, None)
        torch.testing.assert_close(pooling.at_positions(hidden, index), function(hidden, mask))
    head = pooling.POOLERS["latent_attention"]
    assert isinstance(head, pooling.MaskPooler) and head.needs_head
    torch.testing.assert_close(head(hidden, mask, pooling.mean), pooling.mean(hidden, mask))
