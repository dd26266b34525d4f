"""``.txt`` / ``.md`` files as plain text cut into chunks of at most ``max_chars`` characters:
what ``llmvec index`` reads until it moves to :mod:`~llmvec.documents.readers` and
:mod:`~llmvec.documents.chunking`.

A chunk is one or more consecutive paragraphs (blank-line separated); a longer paragraph is cut
at sentence ends, then at spaces. Each chunk's id is ``<absolute path of its file>#<chunk
number>``, stable across runs and distinct across folders, so indexing a folder again replaces
its chunks instead of duplicating them.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmvec.documents.decoding import read_text
from llmvec.documents.records import Skipped, Unreadable, cannot_read
from llmvec.documents.walk import find_files
from llmvec.validation import check_positive

SUFFIXES = (".txt", ".md")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """A piece of one file: its id, the file's absolute path, its number, its text."""

    id: str
    source: str
    number: int
    text: str

    @property
    def metadata(self) -> dict[str, str | int]:
        """What an index stores beside the text."""
        return {"source": self.source, "chunk": self.number}


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_chunks` read: the chunks, every file read (text or not), what it skipped."""

    chunks: list[Chunk]
    files: list[str]
    skipped: list[Skipped]


def split_text(text: str, max_chars: int | None) -> list[str]:
    """Paragraph chunks of at most ``max_chars`` characters (``None``: the whole text as one)."""
    if max_chars is not None:
        check_positive("max_chars", max_chars)
    text = text.strip()
    if not text:
        return []
    if max_chars is None:
        return [text]
    return list(_packed(_pieces(text, max_chars), max_chars, "\n\n"))


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Paragraphs, with those longer than ``max_chars`` cut at sentence ends, then spaces."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            yield paragraph
        else:
            yield from _packed(_units(paragraph, max_chars), max_chars, " ")


def _packed(pieces: Iterator[str], max_chars: int, joiner: str) -> Iterator[str]:
    """Consecutive pieces (each at most ``max_chars``) joined with ``joiner`` into as few runs
    of at most ``max_chars`` characters as a greedy pass makes."""
    current = ""
    for piece in pieces:
        joined = f"{current}{joiner}{piece}" if current else piece
        if len(joined) <= max_chars:
            current = joined
        else:
            yield current
            current = piece
    if current:
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


def load_chunks(
    root: str | Path,
    max_chars: int | None = 1000,
    *,
    follow_symlinks: bool = False,
    encoding: str = "utf-8",
) -> Loaded:
    """Every chunk of every ``.txt``/``.md`` file under ``root`` (see
    :func:`~llmvec.documents.walk.find_files`), read as plain text, in a stable order; files
    that are binary, do not decode with ``encoding`` or cannot be read are skipped."""
    codecs.lookup(encoding)  # LookupError for a bad encoding, before any file
    found, skipped = find_files(root, follow_symlinks=follow_symlinks, suffixes=SUFFIXES)
    chunks: list[Chunk] = []
    files: list[str] = []
    for source in found:
        try:
            text = read_text(source, encoding)
        except Unreadable as error:
            skipped.append(Skipped(source, error.reason))
            continue
        except OSError as error:
            skipped.append(Skipped(source, cannot_read(error)))
            continue
        files.append(source)
        for number, piece in enumerate(split_text(text, max_chars)):
            chunks.append(Chunk(f"{source}#{number}", source, number, piece))
    return Loaded(chunks, files, skipped)
