"""What every vector index shares: the :class:`Hit` record, the :class:`VectorIndex` protocol,
and one :class:`BaseIndex` that validates input, encodes texts and checks specs, so that each
engine only stores and searches vectors."""

from __future__ import annotations

import json
import math
import os
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, overload, runtime_checkable

import numpy as np

from llmvec.compress import as_matrix
from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from llmvec.encoder import Encoder

#: A document id: a non-empty string or a 64-bit signed integer.
Id: TypeAlias = str | int
#: Metadata filter: ``{field: value}`` (equality) or ``{field: [v1, v2]}`` (any of), all fields
#: must match.
MetadataFilter: TypeAlias = Mapping[str, Any]
#: A query: a text, a list of texts, one vector or a matrix of vectors.
Query: TypeAlias = str | Sequence[str] | Sequence[float] | np.ndarray

_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Hit:
    """One search result: the document's id, its similarity to the query (higher is closer),
    its text (if stored) and its metadata."""

    id: Id
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorIndex(Protocol):
    """The interface :class:`~llmvec.FaissIndex` and :class:`~llmvec.QdrantIndex` share."""

    spec: EmbeddingSpec

    def add(
        self,
        texts: str | Sequence[str],
        ids: Sequence[Id] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Id]: ...

    def add_embeddings(
        self,
        embeddings: Any,
        ids: Sequence[Id] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Id]: ...

    def search(
        self, query: Query, k: int = 10, filter: MetadataFilter | None = None
    ) -> list[Hit] | list[list[Hit]]: ...

    def delete(self, ids: Sequence[Id]) -> None: ...

    def metadata_items(self) -> Iterator[tuple[Id, dict[str, Any]]]: ...

    def __len__(self) -> int: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...


@dataclass(frozen=True)
class Documents:
    """A validated batch to store: ids, texts and metadata, one entry per vector."""

    ids: list[Id]
    texts: list[str | None]
    metadata: list[dict[str, Any]]

    @classmethod
    def build(
        cls,
        count: int,
        ids: Sequence[Id] | None,
        texts: Sequence[str | None] | None,
        metadata: Sequence[Mapping[str, Any]] | None,
    ) -> Documents:
        """Check ids (new random ones when ``None``), texts and metadata for ``count`` vectors."""
        if ids is None:
            id_list: list[Id] = [uuid.uuid4().hex for _ in range(count)]
        else:
            id_list = check_ids(ids)
            duplicates = sorted((str(i) for i, n in Counter(id_list).items() if n > 1))
            if duplicates:
                raise ValueError(f"duplicate ids in one add: {duplicates[:10]}")
        text_list: list[str | None] = [None] * count if texts is None else list(_check_texts(texts))
        meta_list = [{}] * count if metadata is None else [_check_metadata(m) for m in metadata]
        for name, values in (("ids", id_list), ("texts", text_list), ("metadata", meta_list)):
            if len(values) != count:
                raise ValueError(f"got {len(values)} {name} for {count} vectors")
        return cls(id_list, text_list, [dict(m) for m in meta_list])


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


def _check_texts(texts: Sequence[str | None]) -> Iterator[str | None]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
    for position, text in enumerate(texts):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, not str or None")
        yield text


def _check_metadata(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata must be a dict with str keys, got {metadata!r}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata {metadata!r} is not JSON-serialisable: {error}") from None
    return metadata


def check_k(k: int) -> int:
    """Number of hits to return: a positive int."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return k


def check_filter(filter: MetadataFilter | None) -> dict[str, list[Any]] | None:
    """Normalise a metadata filter to ``{field: [allowed values]}``."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping) or not filter:
        raise TypeError(
            f"filter must be a non-empty dict {{field: value or [values]}}, got {filter!r}"
        )
    normalized: dict[str, list[Any]] = {}
    for key, value in filter.items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not isinstance(key, str) or not values:
            raise ValueError(f"invalid filter entry {key!r}: {value!r}")
        for item in values:
            if not isinstance(item, _SCALARS):
                raise TypeError(
                    f"filter value {item!r} for {key!r} must be a str, int, float or bool"
                )
        normalized[key] = values
    return normalized


def matches(metadata: Mapping[str, Any], filter: Mapping[str, list[Any]]) -> bool:
    """Whether ``metadata`` passes a filter from :func:`check_filter`."""
    return all(key in metadata and metadata[key] in values for key, values in filter.items())


def check_vectors(embeddings: Any, dim: int, what: str = "embeddings") -> np.ndarray:
    """A float32 ``(n, dim)`` matrix, or a ``ValueError`` naming the wrong dimension."""
    matrix = as_matrix(embeddings, what)
    if matrix.shape[1] != dim:
        raise ValueError(f"{what} have dimension {matrix.shape[1]}, the index expects {dim}")
    return matrix


def check_spec(stored: EmbeddingSpec, encoder_spec: EmbeddingSpec, what: str) -> None:
    """Refuse an encoder whose vectors differ from the stored ones. ``precision`` and
    ``calibration`` belong to the index, so they are copied from ``stored`` before comparing.

    Where the stored model is named differently from the encoder's (the same weights at another
    location), the stored name must still lead to those weights (:func:`check_model_location`):
    searching builds its encoder from that name, so writing and searching accept the same stores.
    """
    expected = encoder_spec.replace(precision=stored.precision, calibration=stored.calibration)
    stored.check_compatible(expected, what=what)
    if stored.model != encoder_spec.model:
        check_model_location(stored, what)


def check_model_location(stored: EmbeddingSpec, what: str) -> None:
    """Refuse a stored spec whose model cannot be found where it says, or whose weights there
    are not the ones it names (its ``model_revision`` fingerprint)."""
    if stored.backend == "static":
        return
    from llmvec.models import fingerprint, resolve_model

    try:
        location = resolve_model(stored.model)
    except (OSError, ValueError) as error:
        message = f"the {what} names model {stored.model!r}, which is not here: {error}"
        raise ValueError(message) from None
    adapters = any(name == "adapters" for name, _ in stored.extra)
    if location.is_local and stored.model_revision is not None and not adapters:
        found = fingerprint(location)
        if found != stored.model_revision:
            raise ValueError(
                f"the {what} names model {stored.model!r}, whose weights here ({found}) are not "
                f"the stored vectors' ({stored.model_revision})"
            )


def encoder_for(stored: EmbeddingSpec, what: str, **kwargs: Any) -> Encoder:
    """The encoder of a stored spec (``kwargs``: device, batch size...), checked against it."""
    from llmvec.encoder import Encoder

    check_model_location(stored, what)
    encoder = Encoder.from_spec(stored, **kwargs)
    check_spec(stored, encoder.spec, what=what)
    return encoder


def oversampled(k: int, oversample: float, limit: int) -> int:
    """How many candidates to fetch for ``k`` hits: ``ceil(k * oversample)``, at most ``limit``."""
    return max(k, min(limit, math.ceil(k * oversample)))


def check_oversample(oversample: float) -> float:
    """The candidate multiplier for rescoring: a number >= 1."""
    if isinstance(oversample, bool) or not isinstance(oversample, (int, float)) or oversample < 1:
        raise ValueError(f"oversample must be a number >= 1, got {oversample!r}")
    return float(oversample)


class BaseIndex(ABC):
    """Input validation, text encoding and query handling shared by every index.

    Subclasses store and search float32 matrices of validated :class:`Documents`.
    """

    spec: EmbeddingSpec

    def __init__(self, encoder: Encoder | None, spec: EmbeddingSpec) -> None:
        self._encoder = encoder
        self.spec = spec

    @property
    def encoder(self) -> Encoder:
        """The query/document encoder; built from the stored spec on first use if none given."""
        if self._encoder is None:
            self._encoder = encoder_for(self.spec, what=type(self).__name__)
        return self._encoder

    @property
    def dim(self) -> int:
        """Dimension of the stored (float) vectors."""
        return self.spec.dim

    def add(
        self,
        texts: str | Sequence[str],
        ids: Sequence[Id] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Id]:
        """Encode ``texts`` as documents and store them; returns their ids. An existing id is
        replaced."""
        from llmvec.encoder import as_text_list

        items = as_text_list(texts)
        documents = Documents.build(len(items), ids, items, metadata)
        if not items:
            return []
        vectors = self.encoder.encode_documents(items)
        self._add(check_vectors(vectors, self.dim), documents)
        return documents.ids

    def add_embeddings(
        self,
        embeddings: Any,
        ids: Sequence[Id] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Id]:
        """Store precomputed float vectors (made with this index's spec); returns their ids."""
        matrix = check_vectors(embeddings, self.dim)
        documents = Documents.build(len(matrix), ids, texts, metadata)
        if len(matrix):
            self._add(matrix, documents)
        return documents.ids

    @overload
    def search(
        self, query: str, k: int = 10, filter: MetadataFilter | None = None
    ) -> list[Hit]: ...

    @overload
    def search(
        self, query: Query, k: int = 10, filter: MetadataFilter | None = None
    ) -> list[Hit] | list[list[Hit]]: ...

    def search(
        self, query: Query, k: int = 10, filter: MetadataFilter | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """The ``k`` nearest documents to ``query``, best first.

        A text or one vector gives a list of hits; a list of texts or a matrix gives one list
        per query. ``filter`` keeps documents whose metadata match (see :data:`MetadataFilter`).
        """
        check_k(k)
        normalized = check_filter(filter)
        matrix, single = self._query_matrix(query)
        results = self._search(matrix, k, normalized) if len(matrix) else []
        return results[0] if single else results

    def delete(self, ids: Sequence[Id]) -> None:
        """Remove documents by id; ids not in the index are ignored."""
        self._delete(list(dict.fromkeys(check_ids(ids))))

    def _query_matrix(self, query: Query) -> tuple[np.ndarray, bool]:
        if isinstance(query, str):
            return check_vectors(self.encoder.encode_queries([query]), self.dim, "queries"), True
        if isinstance(query, Sequence) and query and all(isinstance(q, str) for q in query):
            texts = [str(q) for q in query]
            return check_vectors(self.encoder.encode_queries(texts), self.dim, "queries"), False
        if isinstance(query, Sequence) and not query:
            return np.empty((0, self.dim), dtype=np.float32), False
        array = np.asarray(query)
        if array.dtype.kind not in "fiu":
            raise TypeError(
                f"query must be a str, a list of str, or float vectors; got {type(query).__name__}"
            )
        return check_vectors(array, self.dim, "query vectors"), array.ndim == 1

    @abstractmethod
    def _add(self, vectors: np.ndarray, documents: Documents) -> None:
        """Store validated vectors; existing ids are replaced."""

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, filter: dict[str, list[Any]] | None
    ) -> list[list[Hit]]:
        """Search a non-empty float32 query matrix."""

    @abstractmethod
    def _delete(self, ids: list[Id]) -> None:
        """Remove the given (valid, unique) ids."""

    @abstractmethod
    def metadata_items(self) -> Iterator[tuple[Id, dict[str, Any]]]:
        """Every stored document's id and metadata."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of stored documents."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Persist the index at ``path``."""

    def close(self) -> None:  # noqa: B027 - optional hook: most indexes hold nothing open
        """Release what the index holds open (files, locks, connections)."""
