"""llmvec: decoder-only LLMs as sentence embedding models, wired into RAG stacks."""

from typing import TYPE_CHECKING

from llmvec.compress import quantize, truncate
from llmvec.encoder import Encoder
from llmvec.encoding.templates import INSTRUCTION_FORMATS, TEMPLATES
from llmvec.index import Hit
from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from llmvec.index.faiss import FaissIndex
    from llmvec.index.qdrant import QdrantIndex

__version__ = "0.1.0"

__all__ = [
    "INSTRUCTION_FORMATS",
    "TEMPLATES",
    "EmbeddingSpec",
    "Encoder",
    "FaissIndex",
    "Hit",
    "QdrantIndex",
    "__version__",
    "quantize",
    "truncate",
]


def __getattr__(name: str) -> object:
    # FaissIndex and QdrantIndex need the optional faiss / qdrant extras: import on first use.
    if name in ("FaissIndex", "QdrantIndex"):
        import llmvec.index

        return getattr(llmvec.index, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
