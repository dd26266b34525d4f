"""A static model as a trainable module (per-token weights, a projection, optionally the rows)
and the losses it trains with: :mod:`llmvec.training.losses`' contrastive and CoSENT losses and
a distillation loss that needs no dimension shared with the teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmvec.training.losses import ContrastiveLoss, CoSENTLoss, prefix_views


class StaticEmbedder(torch.nn.Module):
    """A static model as a module: each text's weighted mean token row, projected.

    ``vector = mean_t(w[t] * table[t]) @ projection.T``. The table is a frozen buffer unless
    ``train_table``; the token weights ``w`` (initially the model's, or ones) are trained and
    left unconstrained: a weight may shrink to zero or turn negative (it is folded into the
    saved rows either way). The bias-free projection ``(dim, table_dim)`` starts as the
    identity's first ``dim`` rows, so the untrained module gives the model's first ``dim``
    dimensions (distilled tables are PCA-ordered, which suits Matryoshka).
    """

    table: torch.Tensor

    def __init__(
        self,
        table: torch.Tensor,
        token_weights: torch.Tensor | None = None,
        dim: int | None = None,
        *,
        train_table: bool = False,
    ) -> None:
        super().__init__()
        if table.ndim != 2:
            raise ValueError(f"table must be 2-D, got shape {tuple(table.shape)}")
        rows = table.detach().float().clone()
        if train_table:
            self.table = torch.nn.Parameter(rows)
        else:
            self.register_buffer("table", rows)
        if token_weights is None:
            token_weights = torch.ones(len(rows))
        if token_weights.shape != (len(rows),):
            raise ValueError(
                f"token_weights has shape {tuple(token_weights.shape)}, expected ({len(rows)},)"
            )
        self.token_weights = torch.nn.Parameter(token_weights.detach().float().clone())
        dim = rows.shape[1] if dim is None else dim
        if not 1 <= dim <= rows.shape[1]:
            raise ValueError(f"dim must be from 1 to {rows.shape[1]}, got {dim}")
        self.projection = torch.nn.Parameter(torch.eye(dim, rows.shape[1]))

    @property
    def dim(self) -> int:
        """The output dimension."""
        return int(self.projection.shape[0])

    def forward(self, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """``(len(counts), dim)``: the vector of each consecutive run of ``counts`` ids (zero
        for a text without tokens)."""
        offsets = torch.cumsum(counts, dim=0) - counts
        sums = F.embedding_bag(
            ids,
            self.table,
            offsets,
            mode="sum",
            per_sample_weights=self.token_weights[ids],
        )
        means = sums / counts.clamp(min=1).to(sums.dtype)[:, None]
        return means @ self.projection.T

    def folded_rows(self) -> torch.Tensor:
        """One row per token with its weight and the projection folded in: the table whose mean
        rows are this module's vectors."""
        with torch.no_grad():
            return (self.table * self.token_weights[:, None]) @ self.projection.T


@dataclass(frozen=True)
class SimilarityDistillationLoss:
    """Distillation that needs no shared dimension: the mean squared difference between the
    student's and the teacher's in-batch cosine-similarity matrices (the diagonal included; it
    is 1 on both sides and adds no gradient). Summed over the Matryoshka prefixes of the student
    (the full vector only when empty) and, with ``binary``, over their straight-through signs
    too, always against the teacher's full float vectors."""

    matryoshka_dims: tuple[int, ...] = ()
    binary: bool = False

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``student`` ``(n, d)`` and ``teacher`` ``(n, D)`` vectors of the same ``n`` texts."""
        target = _cosines(teacher)
        total = student.new_zeros((), dtype=torch.float32)
        for dim, view in prefix_views(self.matryoshka_dims, student.shape[-1], self.binary):
            total = total + F.mse_loss(_cosines(view(student[:, :dim])), target)
        return total


@dataclass(frozen=True)
class VectorDistillationLoss:
    """tokenlearn's target: each text's own teacher vector, PCA'd to the student's width (so
    that its prefixes are the teacher's strongest directions): ``1 - cos`` of the student's and
    the target's prefix, summed over the Matryoshka prefixes (the full vector only when empty)
    and, with ``binary``, over their straight-through signs too."""

    matryoshka_dims: tuple[int, ...] = ()
    binary: bool = False

    def __call__(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``student`` and ``target`` ``(n, d)``: the vectors and the PCA'd teacher's."""
        if student.shape != target.shape:
            raise ValueError(
                f"student {tuple(student.shape)} and target {tuple(target.shape)} differ"
            )
        total = student.new_zeros((), dtype=torch.float32)
        for dim, view in prefix_views(self.matryoshka_dims, student.shape[-1], self.binary):
            prefix, goal = view(student[:, :dim].float()), target[:, :dim].float()
            total = total + (1 - F.cosine_similarity(prefix, goal, dim=-1)).mean()
        return total


#: The distillation losses, by the name ``distill_loss`` takes.
DISTILLATION_LOSSES: dict[str, type[SimilarityDistillationLoss] | type[VectorDistillationLoss]] = {
    "similarity": SimilarityDistillationLoss,
    "vectors": VectorDistillationLoss,
}


def _cosines(vectors: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


class StaticObjective(torch.nn.Module):
    """The training loss of a batch laid out as queries, positives, negatives (``pairs``,
    ``pairs`` and ``negatives`` texts), the two sides of ``len(scores)`` scored pairs, then
    texts to distil on: the weighted sum of the contrastive loss on the pairs, CoSENT on the
    scored pairs and the distillation loss on every text of the batch."""

    def __init__(
        self,
        embedder: StaticEmbedder,
        contrastive: ContrastiveLoss | None,
        distillation: SimilarityDistillationLoss | VectorDistillationLoss | None,
        contrastive_weight: float = 1.0,
        distill_weight: float = 1.0,
        cosent: CoSENTLoss | None = None,
        cosent_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.contrastive = contrastive
        self.distillation = distillation
        self.cosent = cosent
        self.contrastive_weight = contrastive_weight
        self.distill_weight = distill_weight
        self.cosent_weight = cosent_weight

    def forward(
        self,
        ids: torch.Tensor,
        counts: torch.Tensor,
        pairs: int,
        negatives: int,
        teacher: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        vectors = self.embedder(ids, counts)
        loss = vectors.new_zeros((), dtype=torch.float32)
        if self.contrastive is not None and pairs:
            queries, positives = vectors[:pairs], vectors[pairs : 2 * pairs]
            hard = vectors[2 * pairs : 2 * pairs + negatives] if negatives else None
            loss = loss + self.contrastive_weight * self.contrastive(queries, positives, hard)
        if self.cosent is not None and scores is not None and len(scores):
            start, scored = 2 * pairs + negatives, len(scores)
            first = vectors[start : start + scored]
            second = vectors[start + scored : start + 2 * scored]
            loss = loss + self.cosent_weight * self.cosent(first, second, scores)
        if self.distillation is not None and teacher is not None:
            loss = loss + self.distill_weight * self.distillation(vectors, teacher)
        return {"loss": loss}
