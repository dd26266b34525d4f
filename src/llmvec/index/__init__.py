"""Vector indexes that remember the spec of their vectors: FAISS (in-process) and Qdrant."""

from typing import TYPE_CHECKING

from llmvec.index.base import VectorIndex
from llmvec.index.records import Hit, Id, MetadataFilter

if TYPE_CHECKING:
    from llmvec.index.faiss import FaissIndex
    from llmvec.index.qdrant import QdrantIndex

__all__ = ["FaissIndex", "Hit", "Id", "MetadataFilter", "QdrantIndex", "VectorIndex"]


def __getattr__(name: str) -> object:
    # The engines import their optional dependencies (faiss, qdrant-client) only when used.
    if name == "FaissIndex":
        from llmvec.index.faiss import FaissIndex

        return FaissIndex
    if name == "QdrantIndex":
        from llmvec.index.qdrant import QdrantIndex

        return QdrantIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
