"""Search modes and the fusion of hybrid search, shared by every store.

``mode="dense"`` ranks by the vectors, ``"sparse"`` by BM25, and ``"hybrid"`` fuses the two
candidate lists by weighted Reciprocal Rank Fusion: a document's score is
``sum(weight / (rrf_k + rank))`` over the lists it is in (ranks start at 1). Each list is
fetched with :func:`candidates` hits, the filter applied in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from llmvec.index.records import Hit, Id

Mode: TypeAlias = Literal["dense", "sparse", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
#: How many candidates each list of a hybrid search brings (at least ``k``).
DEPTH = 100


def check_mode(mode: Any) -> Mode:
    """``mode`` if it is a search mode."""
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; allowed: {list(MODES)}")
    chosen: Mode = mode
    return chosen


def check_weights(weights: Any) -> tuple[float, float]:
    """The (dense, sparse) weights of hybrid search: two finite numbers >= 0, not both 0."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != 2:
        raise ValueError(f"weights must be a pair (dense, sparse) of numbers, got {weights!r}")
    for value in weights:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 <= value < math.inf
        ):
            raise ValueError(
                f"weights must be finite numbers >= 0, got {value!r} in {tuple(weights)!r}"
            )
    if not any(weights):
        raise ValueError("weights (dense, sparse) cannot both be 0")
    return float(weights[0]), float(weights[1])


def check_rrf_k(rrf_k: Any) -> float:
    """RRF's rank offset: a finite number >= 0 (60 is the usual choice)."""
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float)) or not 0 <= rrf_k < math.inf:
        raise ValueError(f"rrf_k must be a finite number >= 0, got {rrf_k!r}")
    return float(rrf_k)


def candidates(k: int) -> int:
    """How many hits each list of a hybrid search fetches for ``k`` results."""
    return max(k, DEPTH)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], weights: Sequence[float], rrf_k: float, k: int
) -> list[Hit]:
    """The ``k`` best hits of weighted RRF over ``rankings`` (each best first), with their
    fused scores; a document keeps the text and metadata of its first appearance.

    Equal scores keep the order in which documents first appear, list by list.
    """
    if len(rankings) != len(weights):
        raise ValueError(f"got {len(rankings)} rankings for {len(weights)} weights")
    scores: dict[tuple[str, Id], float] = {}
    first: dict[tuple[str, Id], Hit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            key = _key(hit.id)
            first.setdefault(key, hit)
            scores[key] = scores.get(key, 0.0) + weight / (rrf_k + rank)
    order = sorted(scores, key=lambda key: -scores[key])  # stable: first appearance on ties
    return [
        Hit(first[key].id, scores[key], first[key].text, first[key].metadata) for key in order[:k]
    ]


def _key(doc_id: Id) -> tuple[str, Id]:
    """A dict key that keeps ``1`` and ``"1"`` apart (they are distinct ids)."""
    return (type(doc_id).__name__, doc_id)
