"""Documents from a folder of ``.txt`` / ``.md`` files, cut into paragraph chunks.

A chunk is one or more consecutive paragraphs (blank-line separated) of at most ``max_chars``
characters; a longer paragraph is cut at sentence ends, then at spaces. Each chunk's id is
``<relative path>#<chunk number>``, stable across runs, so indexing a folder again replaces its
chunks instead of duplicating them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".txt", ".md")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """A piece of one file: its id, the file's path relative to the root, its number, its text."""

    id: str
    source: str
    number: int
    text: str

    @property
    def metadata(self) -> dict[str, str | int]:
        """What an index stores beside the text."""
        return {"source": self.source, "chunk": self.number}


def find_files(root: str | Path) -> list[Path]:
    """The ``.txt``/``.md`` files under ``root`` (or ``root`` itself), sorted; hidden ones are
    skipped."""
    path = Path(root).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is neither a file nor a directory")
    return sorted(
        file
        for file in path.rglob("*")
        if file.is_file()
        and file.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in file.relative_to(path).parts)
    )


def split_text(text: str, max_chars: int | None) -> list[str]:
    """Paragraph chunks of at most ``max_chars`` characters (``None``: the whole text as one)."""
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be a positive integer or None, got {max_chars!r}")
    text = text.strip()
    if not text:
        return []
    if max_chars is None:
        return [text]
    chunks: list[str] = []
    current = ""
    for paragraph in _pieces(text, max_chars):
        joined = f"{current}\n\n{paragraph}" if current else paragraph
        if len(joined) <= max_chars:
            current = joined
        else:
            chunks.append(current)
            current = paragraph
    chunks.append(current)
    return chunks


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Paragraphs, with those longer than ``max_chars`` cut at sentence ends, then spaces."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            yield paragraph
            continue
        current = ""
        for unit in _units(paragraph, max_chars):
            joined = f"{current} {unit}" if current else unit
            if len(joined) <= max_chars:
                current = joined
            else:
                yield current
                current = unit
        yield current


def _units(paragraph: str, max_chars: int) -> Iterator[str]:
    """Sentences no longer than ``max_chars``: longer ones are cut into words or word pieces."""
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= max_chars:
            yield sentence
            continue
        for word in sentence.split(" "):
            for start in range(0, len(word), max_chars):
                yield word[start : start + max_chars]


def load_chunks(root: str | Path, max_chars: int | None = 1000) -> list[Chunk]:
    """Every chunk of every ``.txt``/``.md`` file under ``root``, in a stable order."""
    base = Path(root).expanduser()
    chunks = []
    for file in find_files(base):
        source = file.name if base.is_file() else file.relative_to(base).as_posix()
        text = file.read_text(encoding="utf-8", errors="replace")
        for number, piece in enumerate(split_text(text, max_chars)):
            chunks.append(Chunk(f"{source}#{number}", source, number, piece))
    return chunks
