"""What reading a file gives: a :class:`Document` of :class:`Section` s, or why it was
:class:`Skipped`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skipped:
    """A file or folder left out (absolute path) and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Section:
    """Text under one heading path (outermost heading first; ``()`` before any heading)."""

    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Document:
    """A file's sections in reading order; an empty file has none."""

    path: str
    sections: list[Section]


class Unreadable(Exception):
    """Raised by a reader for a file it cannot read; ``reason`` becomes :attr:`Skipped.reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cannot_read(error: OSError) -> str:
    """The reason given for a file or folder the system cannot read."""
    return f"cannot read: {error.strerror or error}"
