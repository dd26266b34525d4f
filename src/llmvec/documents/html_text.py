"""HTML's text and sections through the standard library's parser: ``h1``-``h6`` give the
heading path, block elements end paragraphs, scripts, styles and the head are left out."""

from __future__ import annotations

from html.parser import HTMLParser

from llmvec.documents.outline import Outline
from llmvec.documents.records import Section

#: Elements whose content is not text to read.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "title"})
#: Elements a head holds; any other one closes a head left open.
_HEAD_CONTENT = _HIDDEN | {"base", "link", "meta"}
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
#: Elements that end the paragraph before them and start a new one.
_BLOCKS = frozenset(
    {
        *_HEADINGS,
        "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
#: Elements whose ends separate words (table cells).
_CELLS = frozenset({"td", "th"})


def html_sections(text: str) -> list[Section]:
    """The sections of an HTML text (character references decoded)."""
    parser = _TextParser()
    parser.feed(text)
    parser.close()
    return parser.sections()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._outline = Outline()
        self._hidden: list[str] = []  # open elements whose content is left out
        self._pre = 0  # depth of open <pre> elements: their whitespace is kept
        self._words: list[str] = []  # the open paragraph (or heading)
        self._heading: int | None = None  # the level of the open heading

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HEAD_CONTENT and "head" in self._hidden:  # a head left open ends
            self._hidden = [t for t in self._hidden if t != "head"]
        if tag in _HIDDEN:
            self._hidden.append(tag)
        elif self._hidden:
            return
        elif tag == "br" and self._heading is not None:
            self._words.append(" ")
        elif tag in _BLOCKS:
            self._break()
            if tag in _HEADINGS:
                self._heading = _HEADINGS[tag]
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag) :]
        elif self._hidden:
            return
        elif tag in _BLOCKS:
            self._break()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag in _CELLS:
            self._words.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._words.append(data)

    def sections(self) -> list[Section]:
        self._break()
        return self._outline.sections()

    def _break(self) -> None:
        """End the open paragraph, or the open heading."""
        text = "".join(self._words)
        self._words = []
        if self._heading is not None:
            self._outline.heading(self._heading, text)
            self._heading = None
        elif text.strip():
            self._outline.text(text if self._pre else " ".join(text.split()))
            self._outline.text("")
