"""Encode a corpus on a Ray cluster with Ray Data, and write the vectors into Qdrant or FAISS.

Each Ray actor builds one :class:`~llmvec.Encoder` from a serialisable :class:`EncoderConfig`
(the Encoder's keyword arguments, or an :class:`~llmvec.EmbeddingSpec`) and adds a vector column
to every batch::

    import ray
    from llmvec.ray import EmbedBatch, embed

    ds = ray.data.read_parquet("s3://bucket/corpus/")          # columns: id, text
    vectors = ds.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={"encoder": {"model": "all-minilm-l6-v2"}},
        concurrency=4,
        num_gpus=1,
        batch_size=256,
    )
    # The same, after checking the columns and building the encoder once:
    vectors = embed(ds, {"model": "all-minilm-l6-v2"}, concurrency=4, num_gpus=1)

Writing: :func:`write_qdrant` (workers upsert into a Qdrant server; uuid5 point ids make a retried
task idempotent), :func:`write_faiss_shards` plus :func:`llmvec.index.faiss.merge` (shards merged
into one :class:`~llmvec.FaissIndex`), :func:`write_index` (the driver adds the vectors to any
index as they stream back) and :func:`index_dataset` (a store address, as ``llmvec index --ray``
takes it).

Ray is an optional dependency (``pip install 'llmvec[ray]'``): it is imported inside the functions
that need it, never when ``llmvec`` or ``llmvec.ray`` is imported.
"""

from llmvec.ray.cluster import connect
from llmvec.ray.config import EncoderConfig
from llmvec.ray.embed import Columns, EmbedBatch, embed
from llmvec.ray.write import (
    WriteQdrant,
    index_dataset,
    write_faiss_shards,
    write_index,
    write_qdrant,
)

__all__ = [
    "Columns",
    "EmbedBatch",
    "EncoderConfig",
    "WriteQdrant",
    "connect",
    "embed",
    "index_dataset",
    "write_faiss_shards",
    "write_index",
    "write_qdrant",
]
