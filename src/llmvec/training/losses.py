"""Losses on pooled vectors: InfoNCE with in-batch and hard negatives (gathered across processes
under DDP), CoSENT on pairs with a similarity score, each summed over a list of Matryoshka
dimensions and, binary-aware, over straight-through signs.

Every loss takes the pooled states as they come out of :meth:`llmvec.Encoder.pool` (neither
truncated nor normalised) and applies the inference rule itself: truncate first, then
normalise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.05
Binarize = Callable[[torch.Tensor], torch.Tensor]


def prefix_views(
    matryoshka_dims: tuple[int, ...], width: int, binary: bool
) -> Iterator[tuple[int, Binarize]]:
    """What a loss is summed over: each Matryoshka prefix width (``width``, the full one, when
    there is none) with the identity, and with the straight-through sign too when ``binary``."""
    for dim in matryoshka_dims or (width,):
        yield dim, _identity
        if binary:
            yield dim, straight_through_sign


def check_matryoshka_dims(dims: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless every Matryoshka dimension is a positive integer."""
    for dim in dims:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Matryoshka dimensions must be positive integers, got {dim!r}")


def check_matryoshka_fit(dims: tuple[int, ...], hidden_size: int) -> None:
    """Raise ``ValueError`` when a Matryoshka dimension exceeds the model's ``hidden_size``."""
    too_large = [dim for dim in dims if dim > hidden_size]
    if too_large:
        raise ValueError(
            f"Matryoshka dimensions {too_large} exceed the model's hidden size {hidden_size}"
        )


@dataclass(frozen=True)
class _ScaledLoss:
    """The options every similarity loss shares, checked once: a temperature dividing the
    cosines, Matryoshka prefix dimensions and the binary straight-through option."""

    temperature: float = DEFAULT_TEMPERATURE
    matryoshka_dims: tuple[int, ...] = ()
    binary: bool = False

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        check_matryoshka_dims(self.matryoshka_dims)

    def check_dimension(self, hidden_size: int) -> None:
        """Raise ``ValueError`` when a Matryoshka dimension exceeds the model's."""
        check_matryoshka_fit(self.matryoshka_dims, hidden_size)


@dataclass(frozen=True, kw_only=True)
class ContrastiveLoss(_ScaledLoss):
    """InfoNCE over cosine similarities divided by ``temperature``.

    Args:
        temperature: SimCSE's and LLM2Vec's 0.05 by default.
        in_batch_negatives: score each query against every positive and hard negative of the
            batch (all processes' under DDP); ``False`` (NV-Embed's second stage) scores it
            against its own positive and hard negatives only.
        matryoshka_dims: also train the first ``d`` dimensions for each ``d`` (the loss is the
            sum over the dimensions, the full one included only when listed); empty: the full
            vector only.
        binary: add the same loss on sign-binarised vectors (straight-through gradient), so
            binary vectors rescored later keep their ranking.
        gather: gather the documents of every process under DDP (in-batch negatives only).
    """

    in_batch_negatives: bool = True
    gather: bool = True

    def __call__(
        self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None
    ) -> torch.Tensor:
        """The loss of ``queries[i]`` against ``positives[i]``; ``negatives`` holds ``k`` hard
        negatives per query, query by query (``(len(queries) * k, dim)``), or is ``None``."""
        total = queries.new_zeros((), dtype=torch.float32)
        for dim, view in prefix_views(self.matryoshka_dims, queries.shape[-1], self.binary):
            hard = None if negatives is None else view(negatives[:, :dim])
            total = total + self._info_nce(view(queries[:, :dim]), view(positives[:, :dim]), hard)
        return total

    def _info_nce(
        self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None
    ) -> torch.Tensor:
        q = F.normalize(queries.float(), dim=-1)
        p = F.normalize(positives.float(), dim=-1)
        n = None if negatives is None else F.normalize(negatives.float(), dim=-1)
        if not self.in_batch_negatives:
            return own_candidates_loss(q, p, n, self.temperature)
        offset = 0
        if self.gather and _distributed():
            offset = dist.get_rank() * q.shape[0]
            p = gather_with_grad(p)
            n = None if n is None else gather_with_grad(n)
        documents = p if n is None else torch.cat([p, n])
        scores = q @ documents.T / self.temperature
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(scores, labels)


@dataclass(frozen=True)
class CoSENTLoss(_ScaledLoss):
    """CoSENT (Su, 2022; sentence-transformers' ``CoSENTLoss``) on pairs with a gold similarity
    score: for every two pairs whose scores are ordered, a penalty when their cosines are
    ordered the other way, ``log(1 + sum_{s_i > s_j} exp((cos_j - cos_i) / temperature))``.
    Only the order of the scores counts, so any scale (0-5, 0-1) trains alike.

    Args:
        temperature: 0.05 by default, CoSENT's scale of 20.
        matryoshka_dims: also train the first ``d`` dimensions for each ``d`` (summed).
        binary: add the same loss on sign-binarised vectors (straight-through gradient).
    """

    def __call__(
        self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor
    ) -> torch.Tensor:
        """The loss of pairs ``(first[i], second[i])`` whose gold scores are ``scores[i]``."""
        total = first.new_zeros((), dtype=torch.float32)
        for dim, view in prefix_views(self.matryoshka_dims, first.shape[-1], self.binary):
            cosines = F.cosine_similarity(
                view(first[:, :dim]).float(), view(second[:, :dim]).float(), dim=-1
            )
            total = total + self._ordered(cosines, scores)
        return total

    def _ordered(self, cosines: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # [i, j]: cos_j - cos_i, for the pairs whose gold scores say i is the closer.
        differences = (cosines[None, :] - cosines[:, None]) / self.temperature
        ordered = scores[:, None] > scores[None, :]
        # log(1 + sum exp(x)) as a logsumexp over the ordered pairs and a zero.
        terms = torch.cat([differences.new_zeros(1), differences[ordered]])
        return torch.logsumexp(terms, dim=0)


def own_candidates_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """InfoNCE where each (normalised) query sees only its own positive (column 0) and its own
    hard negatives: NV-Embed's loss without in-batch negatives."""
    candidates = positives[:, None]
    if negatives is not None:
        per_query = negatives.shape[0] // queries.shape[0]
        candidates = torch.cat([candidates, negatives.view(queries.shape[0], per_query, -1)], 1)
    scores = torch.einsum("bd,bkd->bk", queries, candidates) / temperature
    return F.cross_entropy(scores, scores.new_zeros(queries.shape[0], dtype=torch.long))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def straight_through_sign(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` (``+1`` for zero, as llmvec's binary quantizer reads ``x > 0`` as one bit and
    the rest as the other) in the forward pass; the identity's gradient in the backward pass."""
    signs = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
    return x + (signs - x).detach()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order, with gradients flowing back to each
    process's own part (``torch.distributed.nn``'s differentiable all-gather)."""
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private API; sentence-transformers gathers with it too.
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(list(all_gather(x.contiguous())))


def split_documents(
    pooled: torch.Tensor, sizes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Queries, positives and hard negatives of one pooled batch laid out in that order."""
    queries, positives, negatives = torch.split(pooled, list(sizes))
    return queries, positives, negatives if negatives.shape[0] else None
