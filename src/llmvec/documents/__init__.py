"""Documents from a folder: the walk (:mod:`.walk`), a reader per file type (:mod:`.readers`:
text, Markdown, reStructuredText, HTML, PDF, DOCX, each file a :class:`Document` of
:class:`Section` s under their heading paths) and token-counted chunking (:mod:`.chunking`).

:mod:`.char_chunks` keeps the character-counted ``.txt``/``.md`` chunks of ``llmvec index``.
"""

from llmvec.documents.char_chunks import Chunk, Loaded, load_chunks, split_text
from llmvec.documents.chunking import (
    Piece,
    TokenSpans,
    chunk_sections,
    hf_token_spans,
    whitespace_spans,
)
from llmvec.documents.readers import READERS, SUPPORTED_SUFFIXES, read_document
from llmvec.documents.records import Document, Section, Skipped
from llmvec.documents.walk import find_files

__all__ = [
    "READERS",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Document",
    "Loaded",
    "Piece",
    "Section",
    "Skipped",
    "TokenSpans",
    "chunk_sections",
    "find_files",
    "hf_token_spans",
    "load_chunks",
    "read_document",
    "split_text",
    "whitespace_spans",
]
