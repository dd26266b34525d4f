"""llmvec: decoder-only LLMs as sentence embedding models, wired into RAG stacks.

The public names load on first use: ``import llmvec`` (and the ``llmvec`` command's parser)
imports neither torch nor transformers until an Encoder, a store or a template is asked for.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvec.compress import quantize, truncate
    from llmvec.encoder import Encoder
    from llmvec.encoding.templates import INSTRUCTION_FORMATS, TEMPLATES
    from llmvec.index import Hit
    from llmvec.index.faiss import FaissIndex
    from llmvec.index.qdrant import QdrantIndex
    from llmvec.spec import EmbeddingSpec

__version__ = "0.1.0"

#: Each public name and the module that defines it. FaissIndex and QdrantIndex need the optional
#: faiss / qdrant extras.
_PUBLIC = {
    "INSTRUCTION_FORMATS": "llmvec.encoding.templates",
    "TEMPLATES": "llmvec.encoding.templates",
    "EmbeddingSpec": "llmvec.spec",
    "Encoder": "llmvec.encoder",
    "FaissIndex": "llmvec.index",
    "Hit": "llmvec.index",
    "QdrantIndex": "llmvec.index",
    "quantize": "llmvec.compress",
    "truncate": "llmvec.compress",
}

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
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
