"""Documents from a folder of ``.txt`` / ``.md`` files, cut into paragraph chunks.

A chunk is one or more consecutive paragraphs (blank-line separated) of at most ``max_chars``
characters; a longer paragraph is cut at sentence ends, then at spaces. Each chunk's id is
``<absolute path of its file>#<chunk number>``, stable across runs and distinct across folders,
so indexing a folder again replaces its chunks instead of duplicating them.

:func:`load_chunks` walks the folder without leaving it: hidden files and folders are skipped,
and so are symlinks to anything outside it unless ``follow_symlinks=True``. Files are read as
strict UTF-8 (a byte order mark removed) or another ``encoding``; binary files (a NUL byte in
the first 8 KiB), files that do not decode and files that cannot be read are skipped and listed
with the reason in :attr:`Loaded.skipped`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmvec.validation import check_positive

SUFFIXES = (".txt", ".md")
_BINARY_SNIFF_BYTES = 8192
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
class Skipped:
    """A file or folder left out (absolute path) and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_chunks` read: the chunks, every file read (text or not), what it skipped."""

    chunks: list[Chunk]
    files: list[str]
    skipped: list[Skipped]


def find_files(
    root: str | Path, *, follow_symlinks: bool = False
) -> tuple[list[str], list[Skipped]]:
    """The ``.txt``/``.md`` files under ``root`` (or ``root`` itself) as absolute POSIX paths,
    in sorted order, and the symlinks, special files and folders left out.

    Hidden files and folders are skipped silently; symlinks are kept under the link's own path,
    but those whose target lies outside ``root`` are left out unless ``follow_symlinks``, and
    so are broken ones and those that loop back to a folder above them.
    """
    top = os.path.abspath(os.path.expanduser(root))
    if os.path.isfile(top):
        return [Path(top).as_posix()], []
    if not os.path.isdir(top):
        raise FileNotFoundError(f"{str(root)!r} is neither a file nor a directory")
    base = Path(os.path.realpath(top))
    files: list[str] = []
    skipped: list[Skipped] = []
    # Depth first in name order: each path with the real paths of the folders above it.
    stack: list[tuple[str, tuple[str, ...]]] = [(top, ())]
    while stack:
        path, above = stack.pop()
        is_dir = os.path.isdir(path)
        if not is_dir and not path.lower().endswith(SUFFIXES):
            continue
        link = os.path.islink(path)
        real = os.path.realpath(path) if link or is_dir else path
        reason = None
        if link and not os.path.exists(path):
            reason = f"broken symlink to {os.readlink(path)!r}"
        elif link and not follow_symlinks and not Path(real).is_relative_to(base):
            reason = f"symlink to {real!r}, outside {str(base)!r}; pass follow_symlinks=True"
        elif is_dir and real in above:
            reason = f"symlink loop back to {real!r}"
        elif not is_dir and not os.path.isfile(path):
            reason = "not a regular file"
        if reason is not None:
            skipped.append(Skipped(Path(path).as_posix(), reason))
        elif not is_dir:
            files.append(Path(path).as_posix())
        else:
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError as error:
                skipped.append(Skipped(Path(path).as_posix(), _cannot_read(error)))
                continue
            inner = (*above, real)
            stack.extend((os.path.join(path, n), inner) for n in names if not n.startswith("."))
    return files, skipped


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
    """Every chunk of every ``.txt``/``.md`` file under ``root`` (see :func:`find_files`), in
    a stable order; files that are binary, do not decode with ``encoding`` or cannot be read
    are skipped. An encoding whose text holds NUL bytes (UTF-16, UTF-32) turns the binary
    check off."""
    nul_means_binary = b"\0" not in "\n".encode(encoding)  # LookupError for a bad encoding
    found, skipped = find_files(root, follow_symlinks=follow_symlinks)
    chunks: list[Chunk] = []
    files: list[str] = []
    for source in found:
        text = _read_text(source, encoding, nul_means_binary)
        if isinstance(text, Skipped):
            skipped.append(text)
            continue
        files.append(source)
        for number, piece in enumerate(split_text(text, max_chars)):
            chunks.append(Chunk(f"{source}#{number}", source, number, piece))
    return Loaded(chunks, files, skipped)


def _read_text(path: str, encoding: str, nul_means_binary: bool) -> str | Skipped:
    """The file's text decoded strictly (a leading byte order mark removed), or why not."""
    try:
        with open(path, "rb") as file:
            data = file.read(_BINARY_SNIFF_BYTES)
            if nul_means_binary and b"\0" in data:
                return Skipped(path, f"binary file: NUL byte at offset {data.index(0)}")
            data += file.read()
    except OSError as error:
        return Skipped(path, _cannot_read(error))
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        bad = f"invalid byte 0x{data[error.start]:02x} at offset {error.start}"
        return Skipped(path, f"not {encoding} text: {bad}; pass encoding= to read it")


def _cannot_read(error: OSError) -> str:
    return f"cannot read: {error.strerror or error}"
