"""Markdown's sections: ATX (``#`` .. ``######``) and setext (``===`` / ``---``) headings,
never inside fenced code; a leading YAML front matter block is text."""

from __future__ import annotations

import re

from llmvec.documents.outline import Outline
from llmvec.documents.records import Section

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*")
_ATX_CLOSING = re.compile(r"(?:^|[ \t])#+$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
#: A paragraph that starts like this is a list, a quote or code: ``---`` under it is no heading.
_NOT_PARAGRAPH = re.compile(r" {4}|\t| {0,3}(?:[-+*>]|\d{1,9}[.)])(?:[ \t]|$)")


def markdown_sections(text: str) -> list[Section]:
    """The sections of a Markdown text; heading lines themselves are not section text."""
    outline = Outline()
    lines = text.splitlines()
    paragraph: list[str] = []  # lines a setext underline would turn into a heading
    fence: tuple[str, int] | None = None  # the open fence's character and length
    start = _front_matter_end(lines)
    for line in lines[:start]:
        outline.text(line)
    for line in lines[start:]:
        if fence is not None:
            outline.text(line)
            if _closes(line, fence):
                fence = None
            continue
        atx = _ATX.fullmatch(line)
        underline = _SETEXT.fullmatch(line)
        if atx:
            _flush(outline, paragraph)
            outline.heading(len(atx.group(1)), _ATX_CLOSING.sub("", (atx.group(2) or "").strip()))
        elif underline and paragraph and not _NOT_PARAGRAPH.match(paragraph[0]):
            outline.heading(1 if underline.group(1)[0] == "=" else 2, " ".join(paragraph))
            paragraph.clear()
        elif line.strip() and not underline and not _FENCE.fullmatch(line):
            paragraph.append(line)
        else:  # a blank line, a thematic break or a fence ends the paragraph
            _flush(outline, paragraph)
            outline.text(line)
            fence = _opens(line)
    _flush(outline, paragraph)
    return outline.sections()


def _opens(line: str) -> tuple[str, int] | None:
    """The fence that ``line`` opens: its character and length."""
    match = _FENCE.fullmatch(line)
    if match is None or (match.group(1)[0] == "`" and "`" in match.group(2)):
        return None
    return match.group(1)[0], len(match.group(1))


def _closes(line: str, fence: tuple[str, int]) -> bool:
    match = _FENCE.fullmatch(line)
    return (
        match is not None
        and match.group(1)[0] == fence[0]
        and len(match.group(1)) >= fence[1]
        and not match.group(2).strip()
    )


def _flush(outline: Outline, paragraph: list[str]) -> None:
    for line in paragraph:
        outline.text(line)
    paragraph.clear()


def _front_matter_end(lines: list[str]) -> int:
    """How many first lines a ``---`` ... ``---`` (or ``...``) front matter block takes."""
    if not lines or lines[0].rstrip() != "---":
        return 0
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() in ("---", "..."):
            return number
    return 0
