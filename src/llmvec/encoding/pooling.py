"""Pooling: token states of one layer -> one vector per sequence. Pure tensor functions, and
:data:`POOLERS`, the registry of how each method pools.

Every function takes ``hidden`` of shape ``(batch, seq, dim)`` and a boolean ``pool_mask`` of
shape ``(batch, seq)`` marking the tokens that may be pooled (text tokens: no padding, no BOS, no
instruction). They never read padded positions, so padding side and batch mates cannot change a
vector. Masked positions are selected with ``torch.where``, never multiplied by zero, so a NaN in
a padded row cannot leak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# POOLING_METHODS names the poolings below; ``latent_attention``'s head is owned by the encoder,
# which passes it to its :data:`POOLERS` entry.
from llmvec.choices import POOLING_METHODS


def _masked(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    return torch.where(pool_mask.unsqueeze(-1), hidden, hidden.new_zeros(()))


def mean(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Average of the pooled token states (accumulated in float32)."""
    summed = _masked(hidden, pool_mask).sum(dim=1, dtype=torch.float32)
    counts = pool_mask.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float32)
    return summed / counts


def weighted_mean(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT, LLM2Vec): the i-th pooled token gets weight i.

    Positions count pooled tokens only, so left padding or an instruction prefix does not shift
    the weights.
    """
    weights = torch.cumsum(pool_mask.to(torch.float32), dim=1) * pool_mask
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    masked = _masked(hidden, pool_mask).to(torch.float32)
    return (masked * weights.unsqueeze(-1)).sum(dim=1)


def at_positions(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The state at column ``index[row]`` of each row, in float32."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, index].to(torch.float32)


def last_index(pool_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True position of each row (any padding side)."""
    positions = torch.arange(pool_mask.shape[1], device=pool_mask.device)
    return torch.where(pool_mask, positions, -1).max(dim=1).values.clamp(min=0)


def first_index(pool_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True position of each row (any padding side)."""
    seq = pool_mask.shape[1]
    positions = torch.arange(seq, device=pool_mask.device)
    return torch.where(pool_mask, positions, seq).min(dim=1).values.clamp(max=seq - 1)


def last_token(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """State of the last pooled token (the template's final quote, or the last text token)."""
    return at_positions(hidden, last_index(pool_mask))


def first_token(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """State of the first pooled token (the CLS token of a BERT-style encoder)."""
    return at_positions(hidden, first_index(pool_mask))


def eos_index(
    pool_mask: torch.Tensor, input_ids: torch.Tensor, eos_token_id: int | None
) -> torch.Tensor:
    """Index of the last EOS token inside the pooling mask of each row; every row must have one."""
    assert eos_token_id is not None, "eos_token pooling needs the tokenizer's EOS id"
    is_eos = pool_mask & (input_ids == eos_token_id)
    missing = ~is_eos.any(dim=1)
    if bool(missing.any()):
        rows = missing.nonzero().flatten().tolist()
        raise ValueError(f"eos_token pooling: rows {rows} contain no EOS id {eos_token_id}")
    return last_index(is_eos)


def eos_token(
    hidden: torch.Tensor, pool_mask: torch.Tensor, input_ids: torch.Tensor, eos_token_id: int
) -> torch.Tensor:
    """State of the last EOS token inside the pooling mask; every row must contain one."""
    return at_positions(hidden, eos_index(pool_mask, input_ids, eos_token_id))


MaskPooling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PositionPooler:
    """A pooling that reads one state per row, at ``index(pool_mask, input_ids, eos_token_id)``
    (read with :func:`at_positions`)."""

    index: Callable[[torch.Tensor, torch.Tensor, int | None], torch.Tensor]


@dataclass(frozen=True)
class MaskPooler:
    """A pooling of the states under the pool mask: ``pool``, or (``None``) the encoder's
    learned head, which has weights and is passed in."""

    pool: MaskPooling | None = None

    @property
    def needs_head(self) -> bool:
        """Whether the encoder's head pools."""
        return self.pool is None

    def __call__(
        self, hidden: torch.Tensor, pool_mask: torch.Tensor, head: MaskPooling | None = None
    ) -> torch.Tensor:
        """The pooled vectors, ``(batch, dim)``."""
        pool = self.pool or head
        assert pool is not None, "this pooling needs the encoder's head"
        return pool(hidden, pool_mask)


#: How each of :data:`POOLING_METHODS` pools.
POOLERS: dict[str, PositionPooler | MaskPooler] = {
    "mean": MaskPooler(mean),
    "weighted_mean": MaskPooler(weighted_mean),
    "last_token": PositionPooler(lambda pool_mask, _ids, _eos: last_index(pool_mask)),
    "eos_token": PositionPooler(eos_index),
    "first_token": PositionPooler(lambda pool_mask, _ids, _eos: first_index(pool_mask)),
    "latent_attention": MaskPooler(),
}


def validate_pooling(method: str) -> str:
    """Return ``method`` if it is a known pooling method, else raise ``ValueError``."""
    if not isinstance(method, str) or method not in POOLING_METHODS:
        raise ValueError(f"unknown pooling method {method!r}; allowed: {list(POOLING_METHODS)}")
    return method
