"""QdrantIndex: vectors in a Qdrant collection, with the spec stored beside them.

Where the collection lives:

* ``location=":memory:"`` (default) or ``path=DIR``: qdrant-client's embedded mode, for tests
  and small data; it emulates Qdrant in numpy and ignores quantization and HNSW settings. It
  stores points as pickles, so a ``path`` folder opens only when llmvec signed it on closing
  (or with ``trust_store=True``; see :mod:`llmvec.index.trust`).
* ``path=DIR, engine="edge"``: the real Qdrant engine in-process (``qdrant-edge-py``), which
  honours quantization once :meth:`QdrantIndex.optimize` has built the segments.
* ``url="http://host:6333"``: a Qdrant server or cluster; the same client code as embedded mode.

Point ids are ``uuid5`` of the user's id (kept in the payload as ``llmvec_id``), so adding the
same documents again replaces them instead of duplicating them. A collection made with BM25
vectors (``sparse``, the default for new ones) stores each text's BM25 term-frequency weights as
the sparse vector ``bm25`` under Qdrant's IDF modifier (:mod:`llmvec.index.bm25`), for
``mode="sparse"`` and ``"hybrid"`` search. With ``matryoshka_dims`` every
point also stores truncated copies of its vector as named vectors, and a search narrows the
candidates from the smallest to the full vector in one multi-stage ``query_points`` call.

A ``path`` store is held by one index at a time (both engines lock their files): opening it
takes its writer lock (:func:`~llmvec.index.storage.writer_lock`) until :meth:`QdrantIndex.close`,
and a second opener gets :class:`~llmvec.index.storage.StoreBusyError`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvec.compress import truncate
from llmvec.index.base import BaseIndex
from llmvec.index.bm25 import BM25Settings, document_weights, query_weights
from llmvec.index.qdrant_engines import (
    QUANTIZATIONS,
    ClientEngine,
    EdgeEngine,
    Engine,
    Layout,
    Point,
    Quantized,
    SearchPlan,
    Stage,
    connect_server,
)
from llmvec.index.records import Batch, Conditions, Hit, Id, Stored
from llmvec.index.specs import check_spec, index_spec
from llmvec.index.storage import (
    atomic_directory,
    lock_file,
    read_json,
    write_json,
    writer_lock,
)
from llmvec.index.trust import check_trusted, signature
from llmvec.index.validation import check_oversample
from llmvec.spec import EmbeddingSpec
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.text_encoder import TextEncoder

logger = logging.getLogger(__name__)

ENGINES = ("client", "edge")
FULL_VECTOR = "full"
#: The sparse vector of BM25 term weights.
SPARSE_VECTOR = "bm25"
MARKER = "llmvec-qdrant.json"
FORMAT = "llmvec.qdrant"
FORMAT_VERSION = 1
#: Collection names: letters, digits, ``_``, ``-`` and ``.`` (not first), as file names allow.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}", re.ASCII)
#: Namespace of the uuid5 point ids; changing it would orphan every stored point.
ID_NAMESPACE = uuid.UUID("3f0c6b52-8d1e-5a7b-9c4e-2b6d1f8a0e71")


def point_id(doc_id: Id) -> str:
    """The Qdrant point id of a document id: deterministic, and distinct for ``1`` and ``"1"``."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{type(doc_id).__name__}:{doc_id}"))


def check_collection_name(name: object) -> str:
    """``name`` if it is a valid collection name (it becomes a folder name in local stores)."""
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1 to 255 letters, digits, '_', '-' and '.', "
            "not starting with '.'"
        )
    return name


def vector_name(dim: int) -> str:
    """Name of the truncated (Matryoshka) vector of dimension ``dim``."""
    return f"dim{dim}"


class QdrantIndex(BaseIndex):
    """A Qdrant collection that encodes with an :class:`~llmvec.Encoder` and checks its spec.

    Args:
        encoder: encodes added texts and text queries (``None`` with ``spec``: vectors only,
            text queries build the encoder from the spec).
        collection: collection name.
        location / path / url / client: where the collection lives (see the module docstring);
            at most one; ``client`` is an existing ``QdrantClient``.
        api_key: for ``url``.
        engine: ``client`` (qdrant-client) or ``edge`` (qdrant-edge-py, needs ``path``).
        quantization: ``None``, ``binary`` or ``int8`` (Qdrant's own quantization; the original
            vectors are kept for rescoring).
        matryoshka_dims: smaller prefixes of the vector to store and search first, e.g.
            ``[64, 128]``.
        rescore / oversample: re-rank ``k * oversample`` quantized candidates with the
            original vectors.
        hnsw_ef: HNSW search breadth (``None``: the engine's default).
        batch_size: points per upsert request.
        spec: the vectors' :class:`~llmvec.EmbeddingSpec` when no encoder is given.
        trust_store: open an embedded-mode ``path`` folder that llmvec did not sign (its
            pickles can run code: only for folders you trust).
        sparse: BM25 vectors for ``mode="sparse"`` and ``"hybrid"`` search: ``None`` (a new
            collection gets them with default settings; an existing one keeps what it has),
            ``True``, a :class:`~llmvec.index.bm25.BM25Settings`, or ``False``.

    Opening an existing collection checks its stored spec, quantization, Matryoshka dims and
    (when given) ``sparse`` against these arguments; :meth:`load` opens one with whatever it
    stores.
    """

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        collection: str = "llmvec",
        *,
        location: str | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        engine: str = "client",
        quantization: str | None = None,
        matryoshka_dims: Sequence[int] | None = None,
        rescore: bool = True,
        oversample: float = 4.0,
        hnsw_ef: int | None = None,
        batch_size: int = 256,
        spec: EmbeddingSpec | None = None,
        trust_store: bool = False,
        sparse: bool | BM25Settings | None = None,
    ) -> None:
        spec = index_spec(encoder, spec, what="QdrantIndex")
        if sparse is not None and not isinstance(sparse, (bool, BM25Settings)):
            raise TypeError(f"sparse must be None, a bool or a BM25Settings, got {sparse!r}")
        if quantization is not None and quantization not in QUANTIZATIONS:
            raise ValueError(
                f"unknown quantization {quantization!r}; allowed: {[None, *QUANTIZATIONS]}"
            )
        check_collection_name(collection)
        for name, value in (("batch_size", batch_size), ("hnsw_ef", hnsw_ef)):
            if value is not None:
                check_positive(name, value)
        dims = _check_matryoshka_dims(matryoshka_dims, spec.dim)
        super().__init__(
            encoder, spec.replace(precision=quantization or "float32", calibration=None)
        )
        self.collection = collection
        self.quantization = quantization
        self.matryoshka_dims = dims
        self.rescore = bool(rescore)
        self.oversample = check_oversample(oversample)
        self.hnsw_ef = hnsw_ef
        self.batch_size = batch_size
        self.path = None if path is None else Path(path).expanduser().absolute()
        self.engine = engine
        self._requested_sparse = sparse
        self._held = ExitStack()  # the writer lock of a path store, until close()
        try:
            if self.path is not None:
                self._held.enter_context(writer_lock(self.path))
            self._engine = _connect(
                collection, location, self.path, url, api_key, client, engine, trust_store
            )
            self._held.callback(self._engine.close)
            self._open_or_create()
        except BaseException:
            self._held.close()
            raise

    # ------------------------------------------------------------------ opening
    def _config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "quantization": self.quantization,
            "matryoshka_dims": list(self.matryoshka_dims),
            "sparse": None if self.bm25 is None else self.bm25.to_dict(),
        }

    def _layout(self) -> Layout:
        vectors = {vector_name(d): d for d in self.matryoshka_dims}
        vectors[FULL_VECTOR] = self.dim
        sparse = () if self.bm25 is None else (SPARSE_VECTOR,)
        return Layout(vectors, self.quantization, sparse)

    def _open_or_create(self) -> None:
        what = f"Qdrant collection {self.collection!r}"
        requested_sparse = self._requested_sparse
        if not self._engine.exists():
            if requested_sparse is None or requested_sparse is True:
                requested_sparse = BM25Settings()
            self.bm25 = _with_analyzer(requested_sparse or None)
            self._engine.create(self._layout(), self._config())
            logger.info("created %s (%s)", what, self._layout())
            return
        stored = _parse_config(self._engine.read_config(), what)
        check_spec(stored["spec"], self.spec, what=what)
        requested: dict[str, Any] = {
            "quantization": self.quantization,
            "matryoshka_dims": self.matryoshka_dims,
        }
        if requested_sparse is not None:
            requested["sparse"] = requested_sparse
        differing = [
            name for name, value in requested.items() if not _same(name, stored[name], value)
        ]
        if differing:
            details = "; ".join(
                f"{name}: stored {stored[name]!r} != requested {requested[name]!r}"
                for name in differing
            )
            raise ValueError(
                f"{what} exists with other settings: {details} (QdrantIndex.load opens it as "
                "stored)"
            )
        self.bm25 = _with_analyzer(stored["sparse"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        encoder: TextEncoder | None = None,
        *,
        collection: str = "llmvec",
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        engine: str | None = None,
        trust_store: bool = False,
        **options: Any,
    ) -> QdrantIndex:
        """Open an existing collection with its stored spec, quantization and Matryoshka dims.

        ``path`` is a directory written by a ``path=`` index or by :meth:`save` (its engine is
        recorded there; ``engine``, when given, must be that one). With ``encoder``, its spec
        must match the stored one; ``options`` (``rescore``, ``oversample``, ``hnsw_ef``,
        ``batch_size``) tune searching.
        """
        root = None if path is None else Path(path).expanduser().absolute()
        engine_name = engine or "client"
        if root is not None:
            marker = read_json(root / MARKER, f"Qdrant index {str(root)!r}")
            engine_name = _check_engine(root, marker.get("engine"), engine)
        what = f"Qdrant collection {collection!r}"
        check_collection_name(collection)
        with writer_lock(root) if root is not None else nullcontext():
            probe = _connect(collection, None, root, url, api_key, client, engine_name, trust_store)
            try:
                if not probe.exists():
                    raise FileNotFoundError(f"{what} does not exist")
                stored = _parse_config(probe.read_config(), what)
            finally:
                probe.close()
            if encoder is not None:
                check_spec(stored["spec"], encoder.spec, what=what)
            return cls(
                encoder,
                collection,
                path=root,
                url=url,
                api_key=api_key,
                client=client,
                engine=engine_name,
                quantization=stored["quantization"],
                matryoshka_dims=stored["matryoshka_dims"],
                spec=stored["spec"],
                trust_store=trust_store,
                sparse=stored["sparse"] or False,
                **options,
            )

    # ------------------------------------------------------------------ data
    def __len__(self) -> int:
        return self._engine.count()

    def __repr__(self) -> str:
        return (
            f"QdrantIndex(collection={self.collection!r}, engine={self.engine!r}, "
            f"model={self.spec.model!r}, quantization={self.quantization!r}, dim={self.dim})"
        )

    def _add(self, vectors: np.ndarray, documents: Batch) -> None:
        named = {FULL_VECTOR: vectors}
        named.update({vector_name(d): truncate(vectors, d) for d in self.matryoshka_dims})
        points: list[Point] = [
            (
                point_id(doc_id),
                {name: matrix[row].tolist() for name, matrix in named.items()},
                {"llmvec_id": doc_id, "text": text, "metadata": metadata},
            )
            for row, (doc_id, text, metadata) in enumerate(
                zip(documents.ids, documents.texts, documents.metadata, strict=True)
            )
        ]
        if self.bm25 is not None:
            analyzer = self.bm25.analyzer()
            for (_, point_vectors, _), text in zip(points, documents.texts, strict=True):
                weights = document_weights(analyzer.terms(text or ""), self.bm25)
                if weights.indices:  # no text, or no term in it: no sparse vector
                    point_vectors[SPARSE_VECTOR] = weights
        for start in range(0, len(points), self.batch_size):
            self._engine.upsert(points[start : start + self.batch_size])

    def _delete(self, ids: list[Id]) -> None:
        if ids:
            self._engine.delete([point_id(i) for i in ids])

    def _stored(self, ids: list[Id]) -> Stored:
        found = {pid: (v, p) for pid, v, p in self._engine.retrieve([point_id(i) for i in ids])}
        missing = [i for i in ids if point_id(i) not in found]
        if missing:
            raise KeyError(f"ids {missing[:10]} are not in the index")
        points = [found[point_id(i)] for i in ids]
        rows = [vectors[FULL_VECTOR] for vectors, _ in points]
        return Stored(
            np.asarray(rows, dtype=np.float32).reshape(len(ids), self.dim),
            [payload.get("text") for _, payload in points],
            [dict(payload.get("metadata") or {}) for _, payload in points],
        )

    def metadata_items(self) -> Iterator[tuple[Id, dict[str, Any]]]:
        for batch in self._engine.scroll(self.batch_size, with_vectors=False):
            for _, _, payload in batch:
                yield payload["llmvec_id"], dict(payload.get("metadata") or {})

    def _search(self, queries: np.ndarray, k: int, filter: Conditions | None) -> list[list[Hit]]:
        _check_exact_values(filter)
        named = {FULL_VECTOR: queries}
        named.update({vector_name(d): truncate(queries, d) for d in self.matryoshka_dims})
        per_query = [
            {name: matrix[row].tolist() for name, matrix in named.items()}
            for row in range(len(queries))
        ]
        results = self._engine.query(per_query, self._plan(k, filter))
        return [_hits(scored) for scored in results]

    def _sparse_search(
        self, texts: list[str], k: int, filter: Conditions | None
    ) -> list[list[Hit]]:
        assert self.bm25 is not None
        _check_exact_values(filter)
        analyzer = self.bm25.analyzer()
        queries = [query_weights(analyzer.terms(text)) for text in texts]
        asked = [row for row, query in enumerate(queries) if query.indices]
        results: list[list[Hit]] = [[] for _ in texts]  # a query with no term finds nothing
        if asked:
            found = self._engine.query_sparse(
                [queries[row] for row in asked], SPARSE_VECTOR, k, filter
            )
            for row, scored in zip(asked, found, strict=True):
                results[row] = _hits(scored)
        return results

    def _plan(self, k: int, filter: Conditions | None) -> SearchPlan:
        quantized: Quantized = None
        if self.quantization is not None:
            quantized = "rescore" if self.rescore else "plain"
        candidates = math.ceil(k * self.oversample)
        stages = [
            # Smallest vector first, with the widest candidate list.
            Stage(vector_name(d), candidates * (len(self.matryoshka_dims) - i), quantized)
            for i, d in enumerate(self.matryoshka_dims)
        ]
        # A final re-ranking over prefetched candidates must use the original vectors: ranking
        # them by binary codes again collapses recall.
        final: Quantized = "ignore" if stages and quantized else quantized
        stages.append(Stage(FULL_VECTOR, k, final))
        return SearchPlan(stages, self.oversample, self.hnsw_ef, filter)

    # ------------------------------------------------------------------ lifecycle
    def optimize(self) -> None:
        """Build HNSW graphs and quantized vectors now (Qdrant Edge leaves this to the caller;
        servers do it in the background)."""
        self._engine.optimize()

    def close(self) -> None:
        """Flush and release the engine and the store's lock (a ``path`` store is locked while
        open); an embedded-mode folder is signed as llmvec's. Closing twice is harmless."""
        self._held.close()

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Without ``path``: make writes durable. With ``path``: copy the collection into a new
        local directory (embedded mode, or edge for an edge index) atomically; open it with
        :meth:`load`."""
        if path is None:
            self._engine.flush()
            return
        target = Path(path).expanduser().absolute()
        if self.path is not None and target == self.path:
            raise ValueError(f"{str(target)!r} is this index's own storage; call save() to flush")
        with atomic_directory(target, MARKER) as staging:
            copy = QdrantIndex(
                None,
                self.collection,
                path=staging,
                engine=self.engine,
                quantization=self.quantization,
                matryoshka_dims=self.matryoshka_dims,
                spec=self.spec,
                sparse=self.bm25 or False,
            )
            with copy:
                for batch in self._engine.scroll(self.batch_size):
                    if batch:
                        copy._engine.upsert(batch)
            lock_file(staging).unlink()  # nobody else knows the staging folder's name
        logger.info("saved Qdrant collection %r to %s", self.collection, target)


def _connect(
    collection: str,
    location: str | None,
    path: Path | None,
    url: str | None,
    api_key: str | None,
    client: Any,
    engine: str,
    trust_store: bool = False,
) -> Engine:
    """The engine for a collection; claims (or checks) a ``path`` directory first."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; allowed: {list(ENGINES)}")
    given = [
        name
        for name, value in (
            ("location", location),
            ("path", path),
            ("url", url),
            ("client", client),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give at most one of location, path, url and client; got {given}")
    if engine == "edge" and path is None:
        raise ValueError("engine='edge' stores a local shard: give path=")
    if path is not None:
        _claim_directory(path, engine, trust_store)
    if engine == "edge":
        assert path is not None
        return EdgeEngine(path, collection)
    owns_client = client is None
    on_close: Callable[[], None] | None = None
    if client is None:
        from qdrant_client import QdrantClient

        if path is not None:
            client = QdrantClient(path=str(path))
            on_close = lambda: _write_marker(path, engine, signature(path, MARKER))  # noqa: E731
        elif url is not None:
            client = connect_server(url, api_key, collection)
        else:
            client = QdrantClient(location=location or ":memory:")
    return ClientEngine(client, collection, owns_client, on_close)


def _write_marker(path: Path, engine: str, signed: str | None = None) -> None:
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION, "engine": engine}
    if signed is not None:
        marker["signature"] = signed
    write_json(path / MARKER, marker)


def _check_engine(path: Path, stored: object, requested: str | None) -> str:
    """The engine a directory's marker records, which must be ``requested`` when given."""
    if stored not in ENGINES:
        raise ValueError(f"{str(path)!r} has a corrupt {MARKER}: unknown engine {stored!r}")
    if requested is not None and stored != requested:
        hint = " (qdrant:PATH)" if stored == "client" else " (qdrant-edge:PATH)"
        raise ValueError(
            f"{str(path)!r} holds a Qdrant index for engine {stored!r}{hint}, not {requested!r}"
        )
    return str(stored)


def _claim_directory(path: Path, engine: str, trust_store: bool) -> None:
    """Make ``path`` an llmvec Qdrant directory for ``engine``, or refuse a foreign one (and an
    embedded-mode one llmvec did not sign, unless ``trust_store``)."""
    marker_file = path / MARKER
    if marker_file.is_file():
        marker = read_json(marker_file, f"Qdrant index {str(path)!r}")
        _check_engine(path, marker.get("engine"), engine)
        if engine == "client":
            check_trusted(path, MARKER, marker.get("signature"), trust_store)
        return
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"{str(path)!r} exists and is not an llmvec Qdrant index (no {MARKER}); refusing "
            "to write into it"
        )
    path.mkdir(parents=True, exist_ok=True)
    _write_marker(path, engine)


def _parse_config(config: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Validate llmvec's stored config: spec, quantization and Matryoshka dims."""
    if config is None:
        raise ValueError(f"{what} was not created by llmvec: it stores no EmbeddingSpec")
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{what} stores format {config.get('format')!r} version "
            f"{config.get('format_version')!r}; this llmvec reads {FORMAT!r} version "
            f"{FORMAT_VERSION}"
        )
    try:
        spec = EmbeddingSpec.from_dict(config["spec"])
        sparse = config.get("sparse")  # absent: made before llmvec stored BM25 vectors
        return {
            "spec": spec,
            "quantization": config["quantization"],
            "matryoshka_dims": _check_matryoshka_dims(config["matryoshka_dims"], spec.dim),
            "sparse": None if sparse is None else BM25Settings.from_dict(sparse),
        }
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{what} has a corrupt llmvec config: {error!r}") from None


def _check_matryoshka_dims(dims: Sequence[int] | None, dim: int) -> tuple[int, ...]:
    if not dims:
        return ()
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise TypeError(f"matryoshka_dims must be a list of ints, got {dims!r}")
    for value in dims:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < dim:
            raise ValueError(
                f"matryoshka dim {value!r} must be an int between 1 and {dim - 1} (the full "
                f"vector, {dim}, is always stored)"
            )
    if len(set(dims)) != len(dims):
        raise ValueError(f"duplicate matryoshka_dims: {list(dims)}")
    return tuple(sorted(dims))


def _with_analyzer(settings: BM25Settings | None) -> BM25Settings | None:
    """``settings``, once their analyzer is known to load (the stemmer may be missing)."""
    if settings is not None:
        settings.analyzer()
    return settings


def _same(name: str, stored: Any, requested: Any) -> bool:
    """Whether a stored setting is the requested one (``sparse=True``: any BM25 settings)."""
    if name == "sparse" and isinstance(requested, bool):
        return (stored is not None) == requested
    return bool(stored == requested)


def _check_exact_values(filter: Conditions | None) -> None:
    """Qdrant matches values exactly: a float (other than in a range) cannot match."""
    for key, values in (filter or {}).items():
        for value in values if isinstance(values, list) else []:
            if isinstance(value, float):
                raise ValueError(
                    f"Qdrant matches str, int or bool values exactly; got {value!r} for {key!r}"
                )


def _hits(scored: list[tuple[float, dict[str, Any]]]) -> list[Hit]:
    """Hits of an engine's (score, payload) results."""
    return [
        Hit(payload["llmvec_id"], float(score), payload.get("text"), payload.get("metadata") or {})
        for score, payload in scored
    ]
