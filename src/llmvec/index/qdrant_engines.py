"""The two ways :class:`~llmvec.QdrantIndex` reaches a Qdrant engine, behind one small interface.

* :class:`ClientEngine`: ``qdrant-client`` (embedded ``:memory:`` / ``path=`` mode, or a server
  at ``url=``). The embedded mode is a numpy emulation that ignores quantization and HNSW.
* :class:`EdgeEngine`: ``qdrant-edge-py``, the real Qdrant engine in-process on a local shard
  directory; it honours quantization after :meth:`EdgeEngine.optimize`.

The index describes *what* to do with engine-neutral values (:class:`Layout`, :class:`Stage`,
:class:`SearchPlan`); each engine only maps them onto its own request types.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmvec.index.bm25 import TermWeights
from llmvec.index.records import Conditions, Range
from llmvec.index.storage import read_json, write_json

#: A stored point: (point id, {vector name: dense values or sparse term weights}, payload).
Point = tuple[str, dict[str, "list[float] | TermWeights"], dict[str, Any]]
#: A search result: (score, payload).
Scored = tuple[float, dict[str, Any]]

#: How a query stage uses quantized vectors (see :class:`Stage`).
Quantized = Literal["rescore", "plain", "ignore"] | None

QUANTIZATIONS = ("binary", "int8")
_INT8_QUANTILE = 0.99


@dataclass(frozen=True)
class Layout:
    """A collection's named vectors (name -> size, cosine distance), its quantization, and its
    sparse vectors (names; Qdrant's IDF modifier on each: documents store BM25's
    term-frequency half, Qdrant adds the IDF)."""

    vectors: dict[str, int]
    quantization: str | None
    sparse_vectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """One step of a query: nearest neighbours on the vector ``using``, keeping ``limit``.

    ``quantized``: ``"rescore"`` searches the quantized vectors and re-ranks with the originals,
    ``"plain"`` ranks by the quantized vectors alone, ``"ignore"`` searches the original
    vectors, ``None`` leaves the engine's default.
    """

    using: str
    limit: int
    quantized: Quantized


@dataclass(frozen=True)
class SearchPlan:
    """Stages from the first prefetch (innermost) to the final ranking, plus shared settings."""

    stages: list[Stage]
    oversampling: float
    hnsw_ef: int | None
    filter: Conditions | None


class Engine(ABC):
    """Create, fill and query one collection. Subclasses map the plan onto their types."""

    collection: str
    types: Any  # the module holding the request types (qdrant_client.models or qdrant_edge)

    @abstractmethod
    def exists(self) -> bool:
        """Whether the collection exists."""

    @abstractmethod
    def create(self, layout: Layout, config: dict[str, Any]) -> None:
        """Create the collection and store llmvec's ``config`` (spec, settings) with it."""

    @abstractmethod
    def read_config(self) -> dict[str, Any] | None:
        """llmvec's config stored with an existing collection, ``None`` if it has none."""

    @abstractmethod
    def upsert(self, points: list[Point]) -> None:
        """Insert or replace points."""

    @abstractmethod
    def delete(self, point_ids: list[str]) -> None:
        """Remove points (missing ones are ignored)."""

    @abstractmethod
    def count(self) -> int:
        """Exact number of points."""

    @abstractmethod
    def scroll(self, batch_size: int, with_vectors: bool = True) -> Iterator[list[Point]]:
        """Every point with its payload and (unless ``with_vectors`` is false) its vectors, in
        batches."""

    @abstractmethod
    def retrieve(self, point_ids: list[str]) -> list[Point]:
        """The points of these ids that exist, with vectors and payloads."""

    def optimize(self) -> None:  # noqa: B027 - optional hook, nothing to do for most engines
        """Build indexes and quantized data now, where the engine leaves that to the caller."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make written data durable, where the engine buffers it."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine (files, locks, connections)."""

    # ------------------------------------------------------------------ queries
    def query(self, queries: list[dict[str, list[float]]], plan: SearchPlan) -> list[list[Scored]]:
        """Run one request per query (named vectors of that query) and return scored payloads."""
        condition = self._filter(plan.filter) if plan.filter else None
        requests = []
        for vectors in queries:
            inner = None
            for stage in plan.stages[:-1]:
                arguments = self._stage_arguments(
                    vectors[stage.using], stage, plan, inner, condition
                )
                inner = self.types.Prefetch(**arguments)
            final = plan.stages[-1]
            arguments = self._stage_arguments(vectors[final.using], final, plan, inner, condition)
            requests.append(self.types.QueryRequest(**arguments, with_payload=True))
        return self._run(requests)

    def query_sparse(
        self, queries: list[TermWeights], using: str, limit: int, filter: Conditions | None
    ) -> list[list[Scored]]:
        """The ``limit`` best points per non-empty sparse query on the sparse vector
        ``using`` (dot product, with the collection's IDF), filtered."""
        condition = self._filter(filter) if filter else None
        requests = [self._sparse_request(query, using, limit, condition) for query in queries]
        return self._run(requests)

    @abstractmethod
    def _sparse_request(self, query: TermWeights, using: str, limit: int, condition: Any) -> Any:
        """The request of one sparse query (the libraries' keywords differ)."""

    def _sparse(self, weights: TermWeights) -> Any:
        """``weights`` as the library's sparse vector."""
        return self.types.SparseVector(indices=list(weights.indices), values=list(weights.values))

    def _point_vectors(self, vectors: Any) -> dict[str, list[float] | TermWeights]:
        """A record's vectors, sparse ones as :class:`TermWeights` (so points copy across
        engines)."""
        found: dict[str, list[float] | TermWeights] = {}
        for name, value in dict(vectors or {}).items():
            if hasattr(value, "indices"):
                found[name] = TermWeights(
                    [int(i) for i in value.indices], [float(v) for v in value.values]
                )
            else:
                found[name] = value
        return found

    def _native_vectors(self, vectors: dict[str, list[float] | TermWeights]) -> dict[str, Any]:
        return {
            name: self._sparse(value) if isinstance(value, TermWeights) else value
            for name, value in vectors.items()
        }

    # Both client libraries name these types and keywords alike: ``self.types`` is the module.
    def _filter(self, filter: Conditions) -> Any:
        t = self.types
        must = []
        for key, condition in filter.items():
            field = f"metadata.{key}"
            if isinstance(condition, Range):
                bounds = {"gt": condition.gt, "gte": condition.gte}
                bounds.update(lt=condition.lt, lte=condition.lte)
                must.append(t.FieldCondition(key=field, range=self._range_type(**bounds)))
                continue
            conditions = [
                t.FieldCondition(key=field, match=t.MatchValue(value=value)) for value in condition
            ]
            must.append(conditions[0] if len(conditions) == 1 else t.Filter(should=conditions))
        return t.Filter(must=must)

    @property
    def _range_type(self) -> Callable[..., Any]:
        """The request type of a number range (its name differs between the libraries)."""
        range_type: Callable[..., Any] = getattr(self.types, "Range", None) or self.types.RangeFloat
        return range_type

    def _params(self, stage: Stage, plan: SearchPlan) -> Any:
        t = self.types
        quantization = None
        if stage.quantized == "ignore":
            quantization = t.QuantizationSearchParams(ignore=True)
        elif stage.quantized is not None:
            rescore = stage.quantized == "rescore"
            quantization = t.QuantizationSearchParams(
                rescore=rescore, oversampling=plan.oversampling if rescore else None
            )
        return t.SearchParams(hnsw_ef=plan.hnsw_ef, quantization=quantization)

    @abstractmethod
    def _stage_arguments(
        self, vector: list[float], stage: Stage, plan: SearchPlan, inner: Any, condition: Any
    ) -> dict[str, Any]:
        """The keywords of a stage's ``Prefetch`` (or of the final ``QueryRequest``), searching
        ``vector`` over the prefetch ``inner`` (or ``None``); the libraries' types share their
        names but not all their keywords."""

    @abstractmethod
    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        """Run a batch of requests."""


def connect_server(url: str, api_key: str | None, collection: str) -> Any:
    """A ``QdrantClient`` for the server at ``url``, checked to answer about ``collection`` (a
    ``ConnectionError`` when it cannot be reached, a ``PermissionError`` when it refuses the
    API key)."""
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    client = QdrantClient(url=url, api_key=api_key)
    try:
        client.collection_exists(collection)
    except ResponseHandlingException as error:
        client.close()
        raise ConnectionError(f"cannot reach the Qdrant server at {url}: {error}") from None
    except UnexpectedResponse as error:
        client.close()
        if error.status_code in (401, 403):
            raise PermissionError(
                f"the Qdrant server at {url} refused the request ({error.status_code}): give "
                "its API key with --api-key or the QDRANT_API_KEY environment variable"
            ) from None
        raise ConnectionError(f"the Qdrant server at {url} answered {error}") from None
    return client


class ClientEngine(Engine):
    """A collection reached through ``qdrant_client.QdrantClient`` (embedded or server).

    llmvec's config lives in the collection's metadata (Qdrant 1.16+ / qdrant-client 1.16+).
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        owns_client: bool,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        from qdrant_client import models

        self.types = models
        self.client = client
        self.collection = collection
        self.owns_client = owns_client  # a client the caller passed in stays open
        self.on_close = on_close  # run once the client has released its files

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def create(self, layout: Layout, config: dict[str, Any]) -> None:
        m = self.types
        quantization: Any = None
        if layout.quantization == "binary":
            quantization = m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
        elif layout.quantization == "int8":
            quantization = m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(
                    type=m.ScalarType.INT8, quantile=_INT8_QUANTILE, always_ram=True
                )
            )
        sparse = {
            name: m.SparseVectorParams(modifier=m.Modifier.IDF) for name in layout.sparse_vectors
        }
        self.client.create_collection(
            self.collection,
            vectors_config={
                name: m.VectorParams(size=size, distance=m.Distance.COSINE)
                for name, size in layout.vectors.items()
            },
            sparse_vectors_config=sparse or None,
            quantization_config=quantization,
            metadata={"llmvec": config},
        )

    def read_config(self) -> dict[str, Any] | None:
        metadata = self.client.get_collection(self.collection).config.metadata or {}
        config = metadata.get("llmvec")
        return config if isinstance(config, dict) else None

    def upsert(self, points: list[Point]) -> None:
        structs = [
            self.types.PointStruct(id=pid, vector=self._native_vectors(vectors), payload=payload)
            for pid, vectors, payload in points
        ]
        self.client.upsert(self.collection, points=structs, wait=True)

    def delete(self, point_ids: list[str]) -> None:
        selector = self.types.PointIdsList(points=list(point_ids))
        self.client.delete(self.collection, points_selector=selector, wait=True)

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def scroll(self, batch_size: int, with_vectors: bool = True) -> Iterator[list[Point]]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                limit=batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            yield [
                (str(r.id), self._point_vectors(r.vector), dict(r.payload or {})) for r in records
            ]
            if offset is None:
                return

    def retrieve(self, point_ids: list[str]) -> list[Point]:
        records = self.client.retrieve(
            self.collection, ids=point_ids, with_payload=True, with_vectors=True
        )
        return [(str(r.id), self._point_vectors(r.vector), dict(r.payload or {})) for r in records]

    def close(self) -> None:
        if self.owns_client:
            self.client.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def _stage_arguments(
        self, vector: list[float], stage: Stage, plan: SearchPlan, inner: Any, condition: Any
    ) -> dict[str, Any]:
        return {
            "query": vector,
            "using": stage.using,
            "limit": stage.limit,
            "params": self._params(stage, plan),
            "prefetch": inner,
            "filter": condition,
        }

    def _sparse_request(self, query: TermWeights, using: str, limit: int, condition: Any) -> Any:
        return self.types.QueryRequest(
            query=self._sparse(query),
            using=using,
            limit=limit,
            filter=condition,
            with_payload=True,
        )

    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        with warnings.catch_warnings():
            # Embedded mode says on every search that it ignores search params (quantization,
            # hnsw_ef); the module docstring of llmvec.index.qdrant says so once.
            warnings.filterwarnings("ignore", message="Local mode performs exact")
            responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[(p.score, dict(p.payload or {})) for p in r.points] for r in responses]


class EdgeEngine(Engine):
    """A collection stored as a Qdrant Edge shard in ``root/<collection>``, with llmvec's config
    in ``root/<collection>.llmvec.json``."""

    def __init__(self, root: Path, collection: str) -> None:
        import qdrant_edge

        self.types = qdrant_edge
        self.collection = collection
        self.shard_dir = root / collection
        self.config_file = root / f"{collection}.llmvec.json"
        self._shard: Any = None

    @property
    def shard(self) -> Any:
        if self._shard is None:
            self._shard = self.types.EdgeShard.load(str(self.shard_dir))
        return self._shard

    def exists(self) -> bool:
        return self.config_file.is_file() and self.shard_dir.is_dir()

    def create(self, layout: Layout, config: dict[str, Any]) -> None:
        qe = self.types
        quantization: Any = None
        if layout.quantization == "binary":
            quantization = qe.BinaryQuantizationConfig(always_ram=True)
        elif layout.quantization == "int8":
            quantization = qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, quantile=_INT8_QUANTILE, always_ram=True
            )
        vectors = {
            name: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine)
            for name, size in layout.vectors.items()
        }
        sparse = {
            name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)
            for name in layout.sparse_vectors
        }
        edge_config = qe.EdgeConfig(
            vectors=vectors, sparse_vectors=sparse or None, quantization_config=quantization
        )
        self._shard = qe.EdgeShard.create(str(self.shard_dir), edge_config)
        write_json(self.config_file, config)

    def read_config(self) -> dict[str, Any] | None:
        if not self.config_file.is_file():
            return None
        return read_json(self.config_file, f"Qdrant Edge collection {self.collection!r}")

    def upsert(self, points: list[Point]) -> None:
        qe = self.types
        batch = [
            qe.Point(pid, self._native_vectors(vectors), payload)
            for pid, vectors, payload in points
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, point_ids: list[str]) -> None:
        self.shard.update(self.types.UpdateOperation.delete_points(list(point_ids)))

    def count(self) -> int:
        return int(self.shard.count(self.types.CountRequest(exact=True)))

    def scroll(self, batch_size: int, with_vectors: bool = True) -> Iterator[list[Point]]:
        offset = None
        while True:
            request = self.types.ScrollRequest(
                offset=offset, limit=batch_size, with_payload=True, with_vector=with_vectors
            )
            records, offset = self.shard.scroll(request)
            yield [
                (str(r.id), self._point_vectors(r.vector), dict(r.payload or {})) for r in records
            ]
            if offset is None:
                return

    def retrieve(self, point_ids: list[str]) -> list[Point]:
        records = self.shard.retrieve(point_ids, True, True)
        return [(str(r.id), self._point_vectors(r.vector), dict(r.payload or {})) for r in records]

    def optimize(self) -> None:
        self.shard.optimize()

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None

    def _stage_arguments(
        self, vector: list[float], stage: Stage, plan: SearchPlan, inner: Any, condition: Any
    ) -> dict[str, Any]:
        return {
            "limit": stage.limit,
            "query": self.types.Query.Nearest(vector, using=stage.using),
            "prefetches": None if inner is None else [inner],
            "params": self._params(stage, plan),
            "filter": condition,
        }

    def _sparse_request(self, query: TermWeights, using: str, limit: int, condition: Any) -> Any:
        return self.types.QueryRequest(
            limit=limit,
            query=self.types.Query.Nearest(self._sparse(query), using=using),
            filter=condition,
            with_payload=True,
        )

    def _sparse(self, weights: TermWeights) -> Any:
        return self.types.SparseVector(list(weights.indices), list(weights.values))

    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        responses = self.shard.query_batch(self.types.QueryBatchRequest(requests))
        return [[(p.score, dict(p.payload or {})) for p in points] for points in responses]
