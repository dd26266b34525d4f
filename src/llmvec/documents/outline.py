"""Sections from a stream of headings and text: the heading path follows heading levels."""

from __future__ import annotations

from llmvec.documents.records import Section


class Outline:
    """Collects text under the current heading path; :meth:`heading` of level ``n`` closes
    every open heading of level ``n`` or deeper. Blank sections are left out."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self._sections: list[Section] = []

    def heading(self, level: int, title: str) -> None:
        """Start a section under ``title`` at ``level`` (smaller is outer); an empty title is
        no heading."""
        title = " ".join(title.split())
        if not title:
            return
        self._close()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))

    def text(self, line: str) -> None:
        """Add a line (or a block) of text; lines are joined with newlines."""
        self._lines.append(line)

    def sections(self) -> list[Section]:
        """The sections so far, the open one included."""
        self._close()
        return list(self._sections)

    def _close(self) -> None:
        text = "\n".join(self._lines).strip()
        self._lines = []
        if text:
            self._sections.append(Section(tuple(t for _, t in self._path), text))
