"""What every vector index shares: the :class:`VectorIndex` protocol, and one
:class:`BaseIndex` that validates input, encodes texts and checks specs, so that each engine only
stores and searches vectors."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

import numpy as np

from llmvec.index.bm25 import BM25Settings
from llmvec.index.fusion import (
    Mode,
    candidates,
    check_mode,
    check_rrf_k,
    check_weights,
    reciprocal_rank_fusion,
)
from llmvec.index.records import Batch, Conditions, Hit, Id, MetadataFilter, Query, Stored
from llmvec.index.specs import check_spec, encoder_for
from llmvec.index.validation import check_documents, check_filter, check_ids, check_vectors
from llmvec.spec import EmbeddingSpec
from llmvec.validation import as_text_list, check_positive

if TYPE_CHECKING:
    from llmvec.text_encoder import TextEncoder


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
        self,
        query: Query,
        k: int = 10,
        filter: MetadataFilter | None = None,
        *,
        mode: Mode = "dense",
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: float = 60,
    ) -> list[Hit] | list[list[Hit]]: ...

    def delete(self, ids: Sequence[Id]) -> None: ...

    def stored(self, ids: Sequence[Id]) -> Stored: ...

    def metadata_items(self) -> Iterator[tuple[Id, dict[str, Any]]]: ...

    def __len__(self) -> int: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...


class BaseIndex(ABC):
    """Input validation, text encoding and query handling shared by every index.

    Subclasses store and search float32 matrices of validated :class:`Batch`, and (where
    :attr:`bm25` is set) the BM25 terms of their texts.
    """

    spec: EmbeddingSpec
    #: How the store's BM25 vectors are made (:mod:`llmvec.index.bm25`); ``None`` for a store
    #: without them, which searches with ``mode="dense"`` only.
    bm25: BM25Settings | None = None

    def __init__(self, encoder: TextEncoder | None, spec: EmbeddingSpec) -> None:
        self._encoder = encoder
        self.spec = spec

    @property
    def encoder(self) -> TextEncoder:
        """The query/document encoder; built from the stored spec on first use if none given."""
        if self._encoder is None:
            self._encoder = encoder_for(self.spec, what=type(self).__name__)
        return self._encoder

    def use_encoder(self, encoder: TextEncoder) -> None:
        """Encode texts with ``encoder`` from now on; its spec must be the stored one."""
        check_spec(self.spec, encoder.spec, what=type(self).__name__)
        self._encoder = encoder

    @property
    def dim(self) -> int:
        """Dimension of the stored (float) vectors."""
        return self.spec.dim

    @property
    def sparse(self) -> bool:
        """Whether the store keeps BM25 vectors (``mode="sparse"`` and ``"hybrid"`` search)."""
        return self.bm25 is not None

    def add(
        self,
        texts: str | Sequence[str],
        ids: Sequence[Id] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Id]:
        """Encode ``texts`` as documents and store them; returns their ids. An existing id is
        replaced."""
        items = as_text_list(texts)
        documents = check_documents(len(items), ids, items, metadata)
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
        documents = check_documents(len(matrix), ids, texts, metadata)
        if len(matrix):
            self._add(matrix, documents)
        return documents.ids

    @overload
    def search(
        self,
        query: str,
        k: int = 10,
        filter: MetadataFilter | None = None,
        *,
        mode: Mode = "dense",
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: float = 60,
    ) -> list[Hit]: ...

    @overload
    def search(
        self,
        query: Query,
        k: int = 10,
        filter: MetadataFilter | None = None,
        *,
        mode: Mode = "dense",
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: float = 60,
    ) -> list[Hit] | list[list[Hit]]: ...

    def search(
        self,
        query: Query,
        k: int = 10,
        filter: MetadataFilter | None = None,
        *,
        mode: Mode = "dense",
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: float = 60,
    ) -> list[Hit] | list[list[Hit]]:
        """The ``k`` best documents for ``query``, best first.

        A text or one vector gives a list of hits; a list of texts or a matrix gives one list
        per query. ``filter`` keeps documents whose metadata match (see :data:`MetadataFilter`).

        ``mode``: ``"dense"`` ranks by vector similarity (the score); ``"sparse"`` by BM25 over
        the stored texts (the score is BM25's; documents sharing no term with the query are
        not returned); ``"hybrid"`` fuses both rankings by weighted Reciprocal Rank Fusion
        (:mod:`llmvec.index.fusion`): the score is ``sum(weight / (rrf_k + rank))`` over the
        dense and the sparse candidate lists, ``weights`` being ``(dense, sparse)``. Sparse and
        hybrid search take text queries, and a store with BM25 vectors (see :attr:`bm25`).
        """
        check_positive("k", k)
        mode = check_mode(mode)
        pair = check_weights(weights)
        offset = check_rrf_k(rrf_k)
        normalized = check_filter(filter)
        if mode == "dense":
            matrix, single = self._query_matrix(query)
            results = self._search(matrix, k, normalized) if len(matrix) else []
            return results[0] if single else results
        texts, single = _query_texts(query, mode)
        self._check_sparse(mode)
        if not texts:
            results = []
        elif mode == "sparse":
            results = self._sparse_search(texts, k, normalized)
        else:
            results = self._hybrid_search(texts, k, normalized, pair, offset)
        return results[0] if single else results

    def _check_sparse(self, mode: str) -> None:
        """A ``ValueError`` saying what to do when this store has no BM25 vectors."""
        if self.bm25 is None:
            raise ValueError(
                f"this {type(self).__name__} store has no BM25 vectors, which mode={mode!r} "
                "searches: it was made without them (sparse=False, or by an llmvec before "
                "hybrid search). Re-index its documents into a new store (new stores keep BM25 "
                "vectors by default), or search it with mode='dense'"
            )

    def _hybrid_search(
        self,
        texts: list[str],
        k: int,
        filter: Conditions | None,
        weights: tuple[float, float],
        rrf_k: float,
    ) -> list[list[Hit]]:
        """Weighted RRF of the dense and the sparse candidate lists (a list whose weight is 0
        is not searched)."""
        depth = candidates(k)
        lists: list[list[list[Hit]]] = []
        used: list[float] = []
        if weights[0]:
            matrix, _ = self._query_matrix(texts)
            lists.append(self._search(matrix, depth, filter))
            used.append(weights[0])
        if weights[1]:
            lists.append(self._sparse_search(texts, depth, filter))
            used.append(weights[1])
        return [
            reciprocal_rank_fusion([found[row] for found in lists], used, rrf_k, k)
            for row in range(len(texts))
        ]

    def delete(self, ids: Sequence[Id]) -> None:
        """Remove documents by id; ids not in the index are ignored."""
        self._delete(list(dict.fromkeys(check_ids(ids))))

    def stored(self, ids: Sequence[Id]) -> Stored:
        """The stored vectors, texts and metadata of ``ids``, in order (so that documents can be
        stored again under other ids without encoding them again). An id not in the index is a
        ``KeyError`` naming it."""
        return self._stored(check_ids(ids))

    @abstractmethod
    def _stored(self, ids: list[Id]) -> Stored:
        """:meth:`stored` of valid ids."""

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
    def _add(self, vectors: np.ndarray, documents: Batch) -> None:
        """Store validated vectors; existing ids are replaced."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, filter: Conditions | None) -> list[list[Hit]]:
        """Search a non-empty float32 query matrix."""

    def _sparse_search(
        self, texts: list[str], k: int, filter: Conditions | None
    ) -> list[list[Hit]]:
        """BM25 search of a non-empty list of query texts (only called when :attr:`bm25` is
        set); hits are documents sharing a term with the query."""
        raise NotImplementedError(f"{type(self).__name__} has no BM25 search")

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

    def optimize(self) -> None:  # noqa: B027 - optional hook: most engines index on add
        """Build what searching needs now, where the engine defers it (Qdrant Edge's HNSW
        graphs and quantized vectors)."""

    def close(self) -> None:  # noqa: B027 - optional hook: most indexes hold nothing open
        """Release what the index holds open (files, locks, connections)."""


def _query_texts(query: Query, mode: str) -> tuple[list[str], bool]:
    """The texts of a sparse or hybrid query, and whether it was a single one."""
    if isinstance(query, str):
        return [query], True
    if isinstance(query, Sequence) and all(isinstance(q, str) for q in query):
        return [str(q) for q in query], False
    raise ValueError(
        f"mode={mode!r} needs text queries (a str or a list of str), got "
        f"{type(query).__name__}: BM25 matches words, so vectors search with mode='dense' only"
    )
