"""BM25's shared half: the one text analyzer every store uses, its settings, and the sparse
vectors Qdrant stores.

A text becomes *terms*: Unicode words (letters and digits; ``_`` splits words), case-folded,
English stopwords removed, then (by default) Snowball's English stemmer (``PyStemmer``, the
``hybrid`` extra). FAISS stores index the terms with ``bm25s``
(:mod:`llmvec.index.faiss`); Qdrant stores keep a sparse vector per document (see
:func:`document_weights`) under an IDF modifier, so Qdrant computes the IDF half itself over
the points it holds.

The analyzer and the settings of a store are recorded in it (:class:`BM25Settings`), so its
queries are analyzed as its documents were, whatever later defaults become.
"""

from __future__ import annotations

import math
import re
import threading
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from llmvec.optional import require

#: Stemmers a store may record: Snowball's English one, or none.
STEMMERS = ("english", None)
_INSTALL_STEMMER = (
    "BM25 stemming needs PyStemmer: pip install 'llmvec[hybrid]' (or store BM25 vectors "
    "without stemming: sparse=BM25Settings(stemmer=None))"
)
#: Letters and digits; ``_`` separates words as punctuation does.
_WORD = re.compile(r"[^\W_]+")
#: Terms shorter than this are dropped (single letters and digits are mostly noise).
MIN_TERM_LENGTH = 2

#: English stopwords (NLTK's list, as fastembed's BM25 uses it), matched before stemming.
ENGLISH_STOPWORDS = frozenset(
    """
    a about above after again against ain all am an and any are aren arent as at be because
    been before being below between both but by can couldn couldnt d did didn didnt do does
    doesn doesnt doing don dont down during each few for from further had hadn hadnt has hasn
    hasnt have haven havent having he her here hers herself him himself his how i if in into
    is isn isnt it its itself just ll m ma me mightn mightnt more most mustn mustnt my myself
    needn neednt no nor not now o of off on once only or other our ours ourselves out over own
    re s same shan shant she shes should shouldn shouldnt shouldve so some such t than that
    thatll the their theirs them themselves then there these they this those through to too
    under until up ve very was wasn wasnt we were weren werent what when where which while who
    whom why will with won wont wouldn wouldnt y you youd youll your youre yours yourself
    yourselves youve
    """.split()  # noqa: SIM905 - a list literal of 179 words reads worse
)


class TermWeights(NamedTuple):
    """A sparse vector: term ids (unique) and their values."""

    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class BM25Settings:
    """How a store's BM25 vectors are made; recorded in the store.

    Args:
        k1: term-frequency saturation (>= 0).
        b: length normalisation, between 0 and 1.
        avg_len: the average document length (in terms) that Qdrant stores' document
            values assume; FAISS stores use their documents' true average instead.
        stemmer: ``"english"`` (Snowball, needs ``PyStemmer``) or ``None``.
    """

    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    stemmer: str | None = "english"

    def __post_init__(self) -> None:
        rules = {
            "k1": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            "b": (lambda v: 0 <= v <= 1, "a number between 0 and 1"),
            "avg_len": (lambda v: 0 < v < math.inf, "a finite number > 0"),
        }
        for name, (valid, wanted) in rules.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
                raise ValueError(f"BM25 {name} must be {wanted}, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.stemmer not in STEMMERS:
            raise ValueError(f"unknown BM25 stemmer {self.stemmer!r}; allowed: {list(STEMMERS)}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a store records them."""
        return {"k1": self.k1, "b": self.b, "avg_len": self.avg_len, "stemmer": self.stemmer}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BM25Settings:
        """Settings recorded by :meth:`to_dict` (a ``ValueError`` for anything else)."""
        if not isinstance(data, Mapping) or set(data) != {"k1", "b", "avg_len", "stemmer"}:
            raise ValueError(f"BM25 settings must have k1, b, avg_len and stemmer, got {data!r}")
        return cls(**data)

    def analyzer(self) -> Analyzer:
        """The analyzer of these settings (shared, thread-safe)."""
        return analyzer(self.stemmer)


class Analyzer:
    """Text to BM25 terms: words, case folding, stopwords, then the stemmer (if any)."""

    def __init__(self, stemmer: str | None) -> None:
        if stemmer not in STEMMERS:
            raise ValueError(f"unknown BM25 stemmer {stemmer!r}; allowed: {list(STEMMERS)}")
        self.stemmer = stemmer
        self._module = None if stemmer is None else require("Stemmer", _INSTALL_STEMMER)
        self._local = threading.local()  # PyStemmer's stemmers are not safe to share

    def terms(self, text: str) -> list[str]:
        """The terms of ``text``, in order (repeated terms repeat)."""
        words = [
            word
            for word in _WORD.findall(text.casefold())
            if len(word) >= MIN_TERM_LENGTH and word not in ENGLISH_STOPWORDS
        ]
        if self._module is None or not words:
            return words
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = self._module.Stemmer(self.stemmer)
        return list(stemmer.stemWords(words))


@cache
def analyzer(stemmer: str | None) -> Analyzer:
    """The shared :class:`Analyzer` for ``stemmer``."""
    return Analyzer(stemmer)


def term_id(term: str) -> int:
    """A term's sparse-vector index: CRC-32 of its UTF-8 bytes (stable across processes and
    versions; Qdrant indices are unsigned 32-bit)."""
    return zlib.crc32(term.encode("utf-8"))


def document_weights(terms: list[str], settings: BM25Settings) -> TermWeights:
    """BM25's term-frequency half for one document: ``tf * (k1 + 1) / (tf + k1 * (1 - b + b *
    len / avg_len))`` per term id (the IDF half is the store's). Terms whose ids collide count
    as one term."""
    counts = Counter(term_id(term) for term in terms)
    norm = settings.k1 * (1 - settings.b + settings.b * len(terms) / settings.avg_len)
    indices = sorted(counts)
    values = [counts[i] * (settings.k1 + 1) / (counts[i] + norm) for i in indices]
    return TermWeights(indices, values)


def query_weights(terms: list[str]) -> TermWeights:
    """A query's sparse vector: 1 per unique term id."""
    indices = sorted({term_id(term) for term in terms})
    return TermWeights(indices, [1.0] * len(indices))
