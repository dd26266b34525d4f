"""What an index stores and returns: ids, filters and queries, :class:`Hit` and
:class:`Batch`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

#: A document id: a non-empty string or a 64-bit signed integer.
Id: TypeAlias = str | int
#: Metadata filter: ``{field: value}`` (equality) or ``{field: [v1, v2]}`` (any of), all fields
#: must match.
MetadataFilter: TypeAlias = Mapping[str, Any]
#: A query: a text, a list of texts, one vector or a matrix of vectors.
Query: TypeAlias = str | Sequence[str] | Sequence[float] | np.ndarray


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
