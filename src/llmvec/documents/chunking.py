"""Sections cut into pieces of at most ``max_tokens`` tokens, counted by the encoder's tokenizer.

A piece never crosses a section boundary and is cut, by preference, at a paragraph break, then
a sentence end, then a space, then any token boundary. Consecutive pieces of a section may
overlap by about ``overlap_tokens`` tokens, starting at a word where one is near. Every piece's
own text is counted again (a text cut out of a longer one can tokenize differently at its
edges), so ``token_spans(piece.text)`` never holds more than ``max_tokens`` tokens.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llmvec.documents.records import Section
from llmvec.validation import check_positive

#: The character span ``(start, end)`` of each token of a text, special tokens left out.
TokenSpans = Callable[[str], list[tuple[int, int]]]

# Where a cut may fall, from the worst place to the best.
_TOKEN, _WORD, _SENTENCE, _PARAGRAPH, _EDGE = range(5)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORDS = re.compile(r"\S+")
_SENTENCE_ENDS = frozenset(".!?…")
#: Sentence ends that need no space after them.
_FULL_STOPS = frozenset("。！？")
#: What may close a sentence after its full stop.
_CLOSERS = frozenset("\"')]}»”’")
#: Characters a tokenizer gets at once from :func:`hf_token_spans` (windows cut at spaces).
_WINDOW_CHARS = 16384
_WINDOWS_PER_CALL = 64


@dataclass(frozen=True)
class Piece:
    """A chunk's text and the heading path of its section."""

    text: str
    headings: tuple[str, ...]


def chunk_sections(
    sections: Iterable[Section],
    token_spans: TokenSpans,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Piece]:
    """The pieces of every section in order (none for an empty one), each of at most
    ``max_tokens`` tokens by ``token_spans`` of its own text. Whitespace is normalised: runs of
    it become one space, paragraphs are separated by a blank line. ``ValueError`` for limits
    out of range, or a ``max_tokens`` too small for one character's tokens."""
    check_positive("max_tokens", max_tokens)
    if isinstance(overlap_tokens, bool) or not isinstance(overlap_tokens, int):
        raise ValueError(f"overlap_tokens must be an integer, got {overlap_tokens!r}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must be 0 or more, got {overlap_tokens}")
    if overlap_tokens >= max_tokens:
        raise ValueError(
            f"overlap_tokens ({overlap_tokens}) must be less than max_tokens ({max_tokens})"
        )
    pieces: list[Piece] = []
    for section in sections:
        text = _normalised(section.text)
        if text:
            chunks = _Cutter(text, token_spans, max_tokens, overlap_tokens).chunks()
            pieces.extend(Piece(chunk, section.headings) for chunk in chunks)
    return pieces


def _normalised(text: str) -> str:
    """Paragraphs (blank-line separated) with their whitespace runs as single spaces, joined by
    blank lines; empty ones left out."""
    paragraphs = (" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def whitespace_spans(text: str) -> list[tuple[int, int]]:
    """A :data:`TokenSpans` where each whitespace-separated word is a token."""
    return [match.span() for match in _WORDS.finditer(text)]


def hf_token_spans(tokenizer: Any) -> TokenSpans:
    """A :data:`TokenSpans` from a Hugging Face fast tokenizer. A long text is tokenized in
    windows of about 16k characters cut at whitespace, a batch of windows per call."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("hf_token_spans needs a fast tokenizer (one that gives offsets)")

    def spans(text: str) -> list[tuple[int, int]]:
        windows = _windows(text)
        found: list[tuple[int, int]] = []
        for first in range(0, len(windows), _WINDOWS_PER_CALL):
            batch = windows[first : first + _WINDOWS_PER_CALL]
            encoded = tokenizer(
                [text[start:end] for start, end in batch],
                add_special_tokens=False,
                return_offsets_mapping=True,
                verbose=False,
            )
            for (start, _), offsets in zip(batch, encoded["offset_mapping"], strict=True):
                found.extend((start + a, start + b) for a, b in offsets)
        return found

    return spans


def _windows(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` windows covering ``text``, each cut before a whitespace character in
    its second half where there is one."""
    windows = []
    start = 0
    while len(text) - start > _WINDOW_CHARS:
        limit = start + _WINDOW_CHARS
        half = start + _WINDOW_CHARS // 2
        cut = max(text.rfind(c, half, limit) for c in " \n\t")
        end = cut if cut >= 0 else limit
        windows.append((start, end))
        start = end
    windows.append((start, len(text)))
    return windows


class _Cutter:
    """One normalised section's chunks. The places a chunk may start or end are the starts of
    tokens that overlap no earlier token, each with its token number and its level."""

    def __init__(self, text: str, token_spans: TokenSpans, max_tokens: int, overlap: int):
        self.text, self.token_spans = text, token_spans
        self.max_tokens, self.overlap = max_tokens, overlap
        spans = token_spans(text)
        self.tokens, self.positions = array("q", [0]), array("q", [0])
        self.levels = bytearray([_EDGE])
        covered = spans[0][1] if spans else 0
        for number in range(1, len(spans)):
            start = spans[number][0]
            if start >= covered and start > self.positions[-1]:
                self.tokens.append(number)
                self.positions.append(start)
                self.levels.append(self._level(start))
            covered = max(covered, spans[number][1])
        self.tokens.append(len(spans))
        self.positions.append(len(text))
        self.levels.append(_EDGE)

    def chunks(self) -> list[str]:
        last = len(self.tokens) - 1
        chunks = []
        start = done = 0  # where the next chunk starts, where the last one ended
        while done < last:
            begin, end, chunk = self._fit(start, done)
            if chunk:
                chunks.append(chunk)
            start = self._overlap_start(begin, end) if self.overlap and end < last else end
            done = end
        return chunks

    def _fit(self, start: int, done: int) -> tuple[int, int, str]:
        """The chunk from ``start`` (or from ``done``, without the overlap, if that leaves no
        room) to the best place past ``done`` where its own tokens fit: start, end, text."""
        tokens = self.tokens
        for begin in dict.fromkeys((start, done)):
            high = bisect_right(tokens, tokens[begin] + self.max_tokens) - 1
            while high > done:
                end = self._best(done + 1, high)
                chunk = self.text[self.positions[begin] : self.positions[end]].strip()
                excess = len(self.token_spans(chunk)) - self.max_tokens
                if excess <= 0:
                    return begin, end, chunk
                high = min(end - 1, bisect_right(tokens, tokens[end] - excess) - 1)
        piece = self.text[self.positions[done] : self.positions[done + 1]].strip()
        raise ValueError(
            f"max_tokens={self.max_tokens} is too small: {piece[:80]!r} cannot be cut into "
            f"pieces of at most {self.max_tokens} tokens"
        )

    def _best(self, low: int, high: int) -> int:
        """The best place to cut in ``[low, high]``: the highest level, then the latest."""
        levels = self.levels
        best = high
        for place in range(high - 1, low - 1, -1):
            if levels[best] >= _PARAGRAPH:
                break
            if levels[place] > levels[best]:
                best = place
        return best

    def _overlap_start(self, begin: int, end: int) -> int:
        """Where the chunk after ``[begin, end]`` starts: about ``overlap`` tokens before its
        text ends, at a word where one is within half the overlap (or 2) of that, leaving the
        next chunk room to pass ``end``."""
        text, positions = self.text, self.positions
        content_end = positions[end]
        while content_end > 0 and text[content_end - 1].isspace():
            content_end -= 1
        last = bisect_left(positions, content_end)  # the first place after the chunk's text
        tokens = self.tokens
        target = tokens[last] - self.overlap
        slack = max(2, self.overlap // 2)
        after = tokens[end + 1]  # the next chunk must reach the next place at least

        def cost(place: int) -> tuple[bool, bool, int, int]:
            distance = abs(tokens[place] - target)
            return (
                after - tokens[place] > self.max_tokens,
                self.levels[place] < _WORD or distance > slack,
                distance,
                -place,
            )

        return min(range(begin + 1, last), key=cost, default=end)

    def _level(self, position: int) -> int:
        """How good a place to cut ``position`` is, from the characters around it."""
        text = self.text
        left = right = position
        while left > 0 and text[left - 1].isspace():
            left -= 1
        while right < len(text) and text[right].isspace():
            right += 1
        if left == right:
            return _SENTENCE if left > 0 and text[left - 1] in _FULL_STOPS else _TOKEN
        if "\n" in text[left:right]:
            return _PARAGRAPH
        while left > 0 and text[left - 1] in _CLOSERS:
            left -= 1
        return _SENTENCE if left > 0 and text[left - 1] in _SENTENCE_ENDS else _WORD
