"""What an index stores and returns: ids, filters and queries, :class:`Hit` and
:class:`Batch`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

#: A document id: a non-empty string or a 64-bit signed integer.
Id: TypeAlias = str | int
#: Metadata filter: ``{field: value}`` (equality), ``{field: [v1, v2]}`` (any of) or
#: ``{field: {"gte": low, "lt": high}}`` (a number range: any of ``gt``, ``gte``, ``lt``, ``lte``);
#: all fields must match.
MetadataFilter: TypeAlias = Mapping[str, Any]
#: A query: a text, a list of texts, one vector or a matrix of vectors.
Query: TypeAlias = str | Sequence[str] | Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Range:
    """A number range condition of a filter; ``None`` bounds are open."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number inside the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (
            (self.gt is None or value > self.gt)
            and (self.gte is None or value >= self.gte)
            and (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
        )


#: A checked filter (:func:`~llmvec.index.validation.check_filter`): per field, the allowed values
#: or a :class:`Range`.
Conditions: TypeAlias = dict[str, "list[Any] | Range"]


@dataclass(frozen=True)
class Hit:
    """One search result: the document's id, its similarity to the query (higher is closer),
    its text (if stored) and its metadata."""

    id: Id
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """A validated batch to store: ids, texts and metadata, one entry per vector (built by
    :func:`~llmvec.index.validation.check_documents`)."""

    ids: list[Id]
    texts: list[str | None]
    metadata: list[dict[str, Any]]


@dataclass(frozen=True)
class Stored:
    """Documents as an index holds them: their exact float32 vectors (``None`` when the index
    keeps only quantized codes), texts and metadata, one entry per requested id."""

    vectors: np.ndarray | None
    texts: list[str | None]
    metadata: list[dict[str, Any]]
