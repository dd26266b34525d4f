"""reStructuredText's sections: titles underlined (and maybe overlined) with punctuation, levels
in the order each adornment style first appears, as docutils assigns them."""

from __future__ import annotations

import re
import unicodedata

from llmvec.documents.outline import Outline
from llmvec.documents.records import Section

#: One punctuation character repeated (docutils' adornment characters), trailing spaces allowed.
_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1*[ \t]*")


def rst_sections(text: str) -> list[Section]:
    """The sections of a reStructuredText text; title and adornment lines are not section text."""
    outline = Outline()
    styles: list[tuple[str, bool]] = []  # (character, overlined) in order of first appearance
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        title = _title(lines, number)
        if title is None:
            outline.text(lines[number])
            number += 1
            continue
        style, heading, used = title
        if style not in styles:
            styles.append(style)
        outline.heading(styles.index(style), heading)
        number += used
    return outline.sections()


def _title(lines: list[str], number: int) -> tuple[tuple[str, bool], str, int] | None:
    """The title starting at line ``number``: its style, its text and how many lines it takes."""
    if number > 0 and lines[number - 1].strip():
        return None  # a title follows a blank line (or starts the text)
    first = lines[number].rstrip()
    if _ADORNMENT.fullmatch(first) and number + 2 < len(lines):
        title, under = lines[number + 1].strip(), lines[number + 2].rstrip()
        if title and under == first and not _ADORNMENT.fullmatch(title) and _fits(title, under):
            return (first[0], True), title, 3
        return None
    if not first or first[0].isspace() or _ADORNMENT.fullmatch(first) or number + 1 >= len(lines):
        return None
    under = lines[number + 1].rstrip()
    if _ADORNMENT.fullmatch(under) and _fits(first, under):
        return (under[0], False), first, 2
    return None


def _fits(title: str, adornment: str) -> bool:
    """Whether the adornment is at least as wide as the title (wide East Asian characters
    count twice, combining marks not at all)."""
    width = sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in title
    )
    return len(adornment) >= width
