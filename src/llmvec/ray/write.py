"""Writing the vectors of a Ray job into an index, in the three topologies a cluster allows.

* :func:`write_qdrant`: the workers upsert into a Qdrant server (``url=``) with
  :class:`WriteQdrant`. Point ids are uuid5 of the document ids, so a retried task, or a whole
  job run again from the start, replaces points instead of duplicating them.
* :func:`write_faiss_shards`: each task saves a float32 :class:`~llmvec.FaissIndex` shard to a
  directory every node can reach; :func:`llmvec.index.faiss.merge` joins them into one index.
  A shard's name is a digest of its ids, so a retried task rewrites the same shard.
* :func:`write_index`: the vectors stream back to the driver, which adds them to any index it
  holds (Qdrant embedded or Edge, FAISS): the topology for stores that live in one process.

:func:`index_dataset` picks one from a store address, as ``llmvec index --ray`` gives it. Each
checks the columns and builds the encoder once before any worker starts, so bad input fails
before any point is written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvec.index.base import VectorIndex
from llmvec.index.specs import check_spec
from llmvec.ray.config import EncoderLike, actor_resources
from llmvec.ray.embed import DEFAULT_BATCH_SIZE, Columns, actor_pool, map_embed, prepare
from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from ray.data import Dataset

    from llmvec.index.stores import Store

logger = logging.getLogger(__name__)

#: Rows per FAISS shard.
DEFAULT_SHARD_SIZE = 100_000


def add_batch(index: VectorIndex, batch: Mapping[str, Any], columns: Columns) -> int:
    """Add one numpy batch (ids, texts, vectors, metadata columns) to ``index``; returns its
    size. Reuses the index's own ``add_embeddings`` (validation, deterministic ids)."""
    ids = batch[columns.id].tolist()
    metadata = None
    if columns.metadata:
        values = zip(*(batch[name].tolist() for name in columns.metadata), strict=True)
        metadata = [dict(zip(columns.metadata, row, strict=True)) for row in values]
    index.add_embeddings(
        np.stack(list(batch[columns.vector])).astype(np.float32, copy=False),
        ids=ids,
        texts=batch[columns.text].tolist(),
        metadata=metadata,
    )
    return len(ids)


class WriteQdrant:
    """Ray Data callable class: upsert each batch of vectors into the Qdrant collection at
    ``url`` (created beforehand with ``spec``, as :func:`write_qdrant` does).

    Each actor opens the collection once and checks that it stores ``spec``; every batch goes
    through :meth:`QdrantIndex.add_embeddings <llmvec.QdrantIndex.add_embeddings>`. Returns one
    row per batch with the number of points written.
    """

    def __init__(
        self,
        spec: EmbeddingSpec,
        url: str,
        collection: str = "llmvec",
        api_key: str | None = None,
        columns: Columns | None = None,
    ) -> None:
        from llmvec.index.qdrant import QdrantIndex

        self.columns = columns or Columns()
        self.index = QdrantIndex.load(url=url, api_key=api_key, collection=collection)
        check_spec(self.index.spec, spec, what=f"Qdrant collection {collection!r}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Upsert one batch; returns ``{"written": [count]}``."""
        return {"written": np.array([add_batch(self.index, batch, self.columns)])}


def write_qdrant(
    dataset: Dataset,
    encoder: EncoderLike,
    url: str,
    *,
    collection: str = "llmvec",
    api_key: str | None = None,
    quantization: str | None = None,
    matryoshka_dims: Sequence[int] | None = None,
    columns: Columns | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    writers: int = 1,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **ray_options: Any,
) -> int:
    """Encode ``dataset`` on ``concurrency`` actors and upsert the vectors from ``writers``
    workers into the Qdrant server at ``url``; returns the number of points written.

    The collection is created (or, if it exists, checked against the encoder's spec,
    ``quantization`` and ``matryoshka_dims``) before any worker starts. Writers reserve no CPU:
    they wait on the network. Options as for :func:`~llmvec.ray.embed`.
    """
    from llmvec.index.qdrant import QdrantIndex

    columns = columns or Columns()
    resources = actor_resources(num_gpus, num_cpus, ray_options)
    config, spec = prepare(dataset, encoder, columns, resources)
    QdrantIndex(
        None,
        collection,
        url=url,
        api_key=api_key,
        quantization=quantization,
        matryoshka_dims=matryoshka_dims,
        spec=spec,
    ).close()
    vectors = map_embed(dataset, config, columns, concurrency, batch_size, resources)
    written = vectors.map_batches(
        WriteQdrant,
        fn_constructor_kwargs={
            "spec": spec,
            "url": url,
            "collection": collection,
            "api_key": api_key,
            "columns": columns,
        },
        compute=actor_pool(writers),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=0,
    )
    total = sum(int(b["written"].sum()) for b in written.iter_batches(batch_format="numpy"))
    logger.info("wrote %d points into Qdrant collection %r at %s", total, collection, url)
    return total


def write_index(
    dataset: Dataset,
    encoder: EncoderLike,
    index: VectorIndex,
    *,
    columns: Columns | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **ray_options: Any,
) -> int:
    """Encode ``dataset`` on Ray actors and add the vectors, as they stream back to this
    process, to ``index`` (any :class:`~llmvec.index.VectorIndex`, whose spec must match the
    encoder's); returns the number of documents added. Save or close the index afterwards.
    """
    columns = columns or Columns()
    resources = actor_resources(num_gpus, num_cpus, ray_options)
    config, spec = prepare(dataset, encoder, columns, resources)
    check_spec(index.spec, spec, what=type(index).__name__)
    vectors = map_embed(dataset, config, columns, concurrency, batch_size, resources)
    return _stream_into(index, vectors, columns, batch_size)


def _stream_into(index: VectorIndex, vectors: Dataset, columns: Columns, batch_size: int) -> int:
    total = 0
    for batch in vectors.iter_batches(batch_size=batch_size, batch_format="numpy"):
        total += add_batch(index, batch, columns)
    logger.info("added %d documents to %r", total, index)
    return total


def write_faiss_shards(
    dataset: Dataset,
    encoder: EncoderLike,
    directory: str | Path,
    *,
    columns: Columns | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **ray_options: Any,
) -> list[Path]:
    """Encode ``dataset`` on Ray actors and save float32 :class:`~llmvec.FaissIndex` shards of
    up to ``shard_size`` documents under ``directory`` (a path every node can write); returns
    the shard directories, sorted. Join them with :func:`llmvec.index.faiss.merge`.
    """
    columns = columns or Columns()
    resources = actor_resources(num_gpus, num_cpus, ray_options)
    config, spec = prepare(dataset, encoder, columns, resources)
    root = Path(directory).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    vectors = map_embed(dataset, config, columns, concurrency, batch_size, resources)
    shards = vectors.map_batches(
        partial(_write_shard, spec=spec, root=str(root), columns=columns),
        batch_size=shard_size,
        batch_format="numpy",
        num_cpus=0,
    )
    paths = sorted({str(path) for b in shards.iter_batches() for path in b["shard"]})
    logger.info("wrote %d FAISS shards under %s", len(paths), root)
    return [Path(path) for path in paths]


def _write_shard(
    batch: dict[str, np.ndarray], spec: EmbeddingSpec, root: str, columns: Columns
) -> dict[str, np.ndarray]:
    """Save one batch as a float32 FAISS shard named by a digest of its ids (a Ray task)."""
    from llmvec.index.faiss import FaissIndex

    shard = FaissIndex(spec=spec)
    add_batch(shard, batch, columns)
    names = "\n".join(f"{type(i).__name__}:{i}" for i in batch[columns.id].tolist())
    path = Path(root) / f"shard-{hashlib.sha256(names.encode()).hexdigest()[:20]}"
    shard.save(path)
    return {"shard": np.array([str(path)], dtype=object)}


def index_dataset(
    dataset: Dataset,
    store: str | Store,
    encoder: EncoderLike,
    *,
    precision: str = "float32",
    columns: Columns | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **ray_options: Any,
) -> int:
    """Encode ``dataset`` on Ray and store it at a store address (``faiss:PATH``,
    ``qdrant:PATH``, ``qdrant-edge:PATH`` or ``qdrant+http://HOST:PORT/COLLECTION``, see
    :mod:`llmvec.index.stores`) or a parsed :class:`~llmvec.index.stores.Store` (which carries a
    server's API key); returns the number of documents written.

    A Qdrant server is written by the workers (:func:`write_qdrant`); a local store by this
    process as the vectors come back (:func:`write_index`), then saved or closed.
    """
    from llmvec.index.stores import check_store_precision, create_store, finish_store, parse_store

    parsed = parse_store(store) if isinstance(store, str) else store
    check_store_precision(parsed, precision)
    columns = columns or Columns()
    resources = actor_resources(num_gpus, num_cpus, ray_options)
    if parsed.url is not None:
        return write_qdrant(
            dataset,
            encoder,
            parsed.url,
            collection=parsed.collection,
            api_key=parsed.api_key,
            quantization=None if precision == "float32" else precision,
            columns=columns,
            concurrency=concurrency,
            batch_size=batch_size,
            **resources,
        )
    config, spec = prepare(dataset, encoder, columns, resources)
    index = create_store(parsed, None, precision, spec=spec)
    try:
        vectors = map_embed(dataset, config, columns, concurrency, batch_size, resources)
        written = _stream_into(index, vectors, columns, batch_size)
    except BaseException:
        index.close()  # release a local store's lock; Qdrant points written so far stay
        raise
    finish_store(index, parsed)
    return written
