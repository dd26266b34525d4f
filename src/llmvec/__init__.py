"""llmvec: decoder-only LLMs as sentence embedding models, wired into RAG stacks."""

from llmvec.encoder import Encoder
from llmvec.spec import EmbeddingSpec
from llmvec.templates import INSTRUCTION_FORMATS, TEMPLATES

__version__ = "0.1.0"

__all__ = ["INSTRUCTION_FORMATS", "TEMPLATES", "EmbeddingSpec", "Encoder", "__version__"]
