"""A file to a :class:`Document`: one reader per file type, chosen by the name's suffix.

Text formats are decoded strictly (see :func:`~llmvec.documents.decoding.read_text`). PDF and
DOCX files need optional packages, imported when such a file is read; without them, or when
the package fails on a file, the file is :class:`Skipped` with the reason.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

from llmvec.documents.decoding import read_text
from llmvec.documents.html_text import html_sections
from llmvec.documents.markdown import markdown_sections
from llmvec.documents.outline import Outline
from llmvec.documents.records import Document, Section, Skipped, Unreadable, cannot_read
from llmvec.documents.rst import rst_sections
from llmvec.optional import require

#: A reader: the sections of the file at a path, read with a text encoding (if text).
Reader = Callable[[str, str], list[Section]]

_DOCX_HEADING = re.compile(r"heading (\d+)", re.IGNORECASE)


def read_plain(path: str, encoding: str) -> list[Section]:
    """Plain text: one section."""
    text = read_text(path, encoding).strip()
    return [Section((), text)] if text else []


def read_markdown(path: str, encoding: str) -> list[Section]:
    """Markdown: sections under ATX and setext headings."""
    return markdown_sections(read_text(path, encoding))


def read_rst(path: str, encoding: str) -> list[Section]:
    """reStructuredText: sections under its titles."""
    return rst_sections(read_text(path, encoding))


def read_html(path: str, encoding: str) -> list[Section]:
    """HTML: the text, sections under ``h1``-``h6``."""
    return html_sections(read_text(path, encoding))


def read_pdf(path: str, encoding: str) -> list[Section]:
    """PDF (pypdf): the pages' text, blank-line separated, as one section."""
    pypdf = _package("pypdf", "pypdf", "pdf")
    with open(path, "rb") as file, _library_errors(".pdf"):
        reader = pypdf.PdfReader(file)
        if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
            raise Unreadable("encrypted PDF: it needs a password")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    text = "\n\n".join(page for page in pages if page)
    return [Section((), text)] if text else []


def read_docx(path: str, encoding: str) -> list[Section]:
    """DOCX (python-docx): paragraphs and table rows in order; ``Title`` and ``Heading N``
    paragraphs give the heading path."""
    docx = _package("docx", "python-docx", "docx")
    outline = Outline()
    with open(path, "rb") as file, _library_errors(".docx"):
        _docx_blocks(docx.Document(file), outline)
    return outline.sections()


#: The reader of each suffix (lower case); any other file is read as plain text.
READERS: dict[str, Reader] = {
    ".txt": read_plain,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".rst": read_rst,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}
SUPPORTED_SUFFIXES = tuple(READERS)


def read_document(path: str | Path, encoding: str = "utf-8") -> Document | Skipped:
    """The file's :class:`Document` (its reader chosen by suffix, plain text for unknown ones),
    or :class:`Skipped` with why: binary, not ``encoding`` text, unreadable, a missing optional
    package, a file its package cannot read. ``LookupError`` for an unknown ``encoding``."""
    codecs.lookup(encoding)
    name = os.fspath(path)
    reader = READERS.get(PurePath(name).suffix.lower(), read_plain)
    try:
        return Document(name, reader(name, encoding))
    except Unreadable as error:
        return Skipped(name, error.reason)
    except OSError as error:
        return Skipped(name, cannot_read(error))


def _package(module: str, name: str, extra: str) -> Any:
    """The optional ``module``, or :class:`Unreadable` saying how to install it."""
    try:
        return require(module, f"needs {name}: pip install 'llmvec[{extra}]'")
    except ImportError as error:
        raise Unreadable(str(error)) from None


@contextmanager
def _library_errors(suffix: str) -> Iterator[None]:
    """A third-party reader's failure on a file as :class:`Unreadable`."""
    try:
        yield
    except (Unreadable, OSError):
        raise
    except Exception as error:
        raise Unreadable(f"cannot read {suffix}: {str(error) or type(error).__name__}") from error


def _docx_blocks(body: Any, outline: Outline) -> None:
    """A DOCX body's paragraphs (headings by style) and table rows, in order."""
    for block in body.iter_inner_content():
        if hasattr(block, "rows"):
            for row in filter(None, _docx_rows(block)):
                outline.text(row)
                outline.text("")
        elif (level := _docx_heading_level(block)) is not None:
            outline.heading(level, block.text)
        elif block.text.strip():
            outline.text(block.text)
            outline.text("")


def _docx_heading_level(paragraph: Any) -> int | None:
    """0 for a ``Title`` paragraph, ``N`` for a ``Heading N`` one, else ``None``."""
    name = (paragraph.style.name if paragraph.style is not None else None) or ""
    if name.lower() == "title":
        return 0
    match = _DOCX_HEADING.fullmatch(name)
    return int(match.group(1)) if match else None


def _docx_rows(table: Any) -> list[str]:
    """Each row's text, its cells space separated; a merged cell is read once."""
    seen: dict[int, Any] = {}  # the cells read, by id (kept alive so that ids stay unique)
    rows: list[str] = []
    for row in table.rows:
        cells = []
        for cell in row.cells:
            if id(cell._tc) not in seen:
                seen[id(cell._tc)] = cell._tc
                cells.append(_docx_text(cell))
        rows.append(" ".join(c for c in cells if c))
    return rows


def _docx_text(cell: Any) -> str:
    """A cell's paragraphs and nested tables' rows, space separated."""
    parts: list[str] = []
    for block in cell.iter_inner_content():
        parts.extend(_docx_rows(block) if hasattr(block, "rows") else [block.text])
    return " ".join(" ".join(p.split()) for p in parts if p.strip())
