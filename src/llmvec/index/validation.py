"""Checks of what an index is given: ids, metadata, filters, vectors and oversampling."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmvec.compress import as_matrix
from llmvec.index.records import Batch, Conditions, Id, MetadataFilter, Range
from llmvec.validation import check_text_list

_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, int, float, bool)
_RANGE_BOUNDS = ("gt", "gte", "lt", "lte")


def check_id(value: Any) -> Id:
    """Return ``value`` if it is a valid id (non-empty str, or int in the signed 64-bit range)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value
    raise ValueError(
        f"invalid id {value!r} ({type(value).__name__}); allowed: a non-empty str or an int "
        f"between {_INT64[0]} and {_INT64[1]}"
    )


def check_ids(ids: Sequence[Id]) -> list[Id]:
    """Validate a list of ids (a single string is not a list of ids)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"ids must be a list of str or int, got {type(ids).__name__}")
    return [check_id(value) for value in ids]


def check_metadata(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``metadata`` if it is a JSON-serialisable dict with str keys."""
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata must be a dict with str keys, got {metadata!r}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata {metadata!r} is not JSON-serialisable: {error}") from None
    return metadata


def check_filter(filter: MetadataFilter | None) -> Conditions | None:
    """Normalise a metadata filter to ``{field: [allowed values] or Range}``."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping) or not filter:
        raise TypeError(
            f"filter must be a non-empty dict {{field: value, [values] or {{'gte': number}}}}, "
            f"got {filter!r}"
        )
    normalized: Conditions = {}
    for key, value in filter.items():
        if not isinstance(key, str):
            raise ValueError(f"invalid filter field {key!r}: fields are str")
        normalized[key] = _range(key, value) if isinstance(value, Mapping) else _values(key, value)
    return normalized


def _values(key: str, value: Any) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not values:
        raise ValueError(f"invalid filter entry {key!r}: {value!r} allows no value")
    for item in values:
        if not isinstance(item, _SCALARS):
            raise TypeError(f"filter value {item!r} for {key!r} must be a str, int, float or bool")
    return values


def _range(key: str, bounds: Mapping[str, Any]) -> Range:
    unknown = sorted(str(name) for name in bounds if name not in _RANGE_BOUNDS)
    if unknown or not bounds:
        raise ValueError(
            f"range filter for {key!r} has bounds {unknown or '{}'}; allowed: {list(_RANGE_BOUNDS)}"
        )
    for name, bound in bounds.items():
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise TypeError(f"range bound {name}={bound!r} for {key!r} must be a number")
    return Range(**{name: float(bound) for name, bound in bounds.items()})


def matches(metadata: Mapping[str, Any], filter: Conditions) -> bool:
    """Whether ``metadata`` passes a filter from :func:`check_filter`."""
    for key, condition in filter.items():
        if key not in metadata:
            return False
        value = metadata[key]
        if isinstance(condition, Range):
            if not condition.contains(value):
                return False
        elif value not in condition:
            return False
    return True


def check_vectors(embeddings: Any, dim: int, what: str = "embeddings") -> np.ndarray:
    """A float32 ``(n, dim)`` matrix, or a ``ValueError`` naming the wrong dimension."""
    matrix = as_matrix(embeddings, what)
    if matrix.shape[1] != dim:
        raise ValueError(f"{what} have dimension {matrix.shape[1]}, the index expects {dim}")
    return matrix


def oversampled(k: int, oversample: float, limit: int) -> int:
    """How many candidates to fetch for ``k`` hits: ``ceil(k * oversample)``, at most ``limit``."""
    return max(k, min(limit, math.ceil(k * oversample)))


def check_oversample(oversample: float) -> float:
    """The candidate multiplier for rescoring: a number >= 1."""
    if isinstance(oversample, bool) or not isinstance(oversample, (int, float)) or oversample < 1:
        raise ValueError(f"oversample must be a number >= 1, got {oversample!r}")
    return float(oversample)


def check_documents(
    count: int,
    ids: Sequence[Id] | None,
    texts: Sequence[str | None] | None,
    metadata: Sequence[Mapping[str, Any]] | None,
) -> Batch:
    """Check ids (new random ones when ``None``), texts and metadata for ``count`` vectors."""
    if ids is None:
        id_list: list[Id] = [uuid.uuid4().hex for _ in range(count)]
    else:
        id_list = check_ids(ids)
        duplicates = sorted((str(i) for i, n in Counter(id_list).items() if n > 1))
        if duplicates:
            raise ValueError(f"duplicate ids in one add: {duplicates[:10]}")
    text_list: list[str | None] = (
        [None] * count if texts is None else check_text_list(texts, allow_none=True)
    )
    meta_list = [{}] * count if metadata is None else [check_metadata(m) for m in metadata]
    for name, values in (("ids", id_list), ("texts", text_list), ("metadata", meta_list)):
        if len(values) != count:
            raise ValueError(f"got {len(values)} {name} for {count} vectors")
    return Batch(id_list, text_list, [dict(m) for m in meta_list])
