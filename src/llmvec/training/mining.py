"""Hard negatives mined from an llmvec index, for contrastive training.

For each (query, positive) pair the index is searched for the query's ``top_k`` documents
(the query encoded with the index's own encoder, as a query). A document is a negative when:

* it is not a positive of that query: no row with the same query names it, by text (compared
  with whitespace collapsed, as chunking may change it) or by the id a row carries;
* its rank is within ``min_rank..max_rank``. Ranks are 1-based positions in the index's result
  list, counted *before* the positives are removed, so a rank is what ``index.search`` reports;
* its score is at most ``positive score - margin`` (the positive-aware margin of NV-Retriever;
  ``margin=0`` only refuses documents scored above the positive, the likely false negatives).
  The positive's score is the cosine of its document vector and the query vector, from the
  same encoder, on the scale of the index's (cosine) scores; an int8 or binary store is compared
  on the scores it returns (rescored with float vectors by default).

The best-ranked documents that qualify are kept, up to ``negatives`` per pair, each a triplet
row ``{"query", "positive", "negative"}`` (with the query's ``"instruction"`` when one is given
for it: it is the trained model's, so the index's encoder searches without it). A query left
without any negative is counted in the report and gives no row. Documents stored without text
cannot be negatives.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np

from llmvec.index.records import Hit, Id
from llmvec.validation import check_positive, check_text

if TYPE_CHECKING:
    from llmvec.index.base import BaseIndex

#: A training pair: (query, positive), or (query, positive, the positive's id in the index).
Pair: TypeAlias = tuple[str, str] | tuple[str, str, Id]


@dataclass(frozen=True)
class MiningOptions:
    """Which search results may become negatives (see the module docstring).

    ``max_rank`` ``None`` means ``top_k``; ``negatives`` is the most rows written per pair.
    """

    top_k: int = 30
    min_rank: int = 1
    max_rank: int | None = None
    margin: float = 0.0
    negatives: int = 1

    def __post_init__(self) -> None:
        check_positive("top_k", self.top_k)
        check_positive("min_rank", self.min_rank)
        check_positive("negatives", self.negatives)
        if self.max_rank is not None:
            check_positive("max_rank", self.max_rank)
            if self.max_rank > self.top_k:
                raise ValueError(f"max_rank ({self.max_rank}) must be at most top_k ({self.top_k})")
        if self.min_rank > self.last_rank:
            name = "top_k" if self.max_rank is None else "max_rank"
            raise ValueError(
                f"min_rank ({self.min_rank}) must be at most {name} ({self.last_rank})"
            )
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float):
            raise ValueError(f"margin must be a number, got {margin!r}")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")

    @property
    def last_rank(self) -> int:
        """The last rank a negative may have: ``max_rank``, or ``top_k`` when it is ``None``."""
        return self.top_k if self.max_rank is None else self.max_rank


@dataclass(frozen=True)
class MiningReport:
    """What a mining run wrote: triplet rows, distinct queries, and queries left without a
    negative (skipped)."""

    rows_written: int
    queries: int
    queries_without_negative: int


@dataclass(frozen=True)
class _Positives:
    """Everything that counts as a positive of one query: collapsed texts and ids."""

    texts: frozenset[str]
    ids: frozenset[Id]


def mine_hard_negatives(
    index: BaseIndex,
    pairs: Sequence[Pair],
    options: MiningOptions,
    batch_size: int = 64,
    instructions: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, str]], MiningReport]:
    """Triplet rows for ``pairs`` with negatives from ``index``, in the pairs' order, and the
    report. ``batch_size`` distinct queries are encoded and searched at a time; a query found
    in ``instructions`` keeps its instruction in its rows."""
    check_positive("batch_size", batch_size)
    checked = [_check_pair(position, pair) for position, pair in enumerate(pairs)]
    if not index.spec.normalize:
        raise ValueError(
            "mining compares the index's scores with cosine similarities, so it needs a store "
            "of normalized vectors; this one holds unnormalized ones"
        )
    positives = _positives_by_query(checked)
    queries = list(positives)
    encoder = index.encoder
    chosen: list[list[str]] = [[] for _ in checked]
    by_query: dict[str, list[int]] = {}
    for row, (query, _, _) in enumerate(checked):
        by_query.setdefault(query, []).append(row)
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        vectors = np.asarray(encoder.encode_queries(batch), dtype=np.float32)
        results = cast(list[list[Hit]], index.search(vectors, k=options.top_k))
        rows = [row for query in batch for row in by_query[query]]
        documents = np.asarray(
            encoder.encode_documents([checked[row][1] for row in rows]), dtype=np.float32
        )
        slot = {query: position for position, query in enumerate(batch)}
        for row, document in zip(rows, documents, strict=True):
            query = checked[row][0]
            score = float(vectors[slot[query]] @ document)
            chosen[row] = _negatives(results[slot[query]], positives[query], score, options)
    given = instructions or {}
    triplets = [
        {"query": query, "positive": positive, "negative": negative}
        | ({"instruction": given[query]} if given.get(query) else {})
        for (query, positive, _), negatives in zip(checked, chosen, strict=True)
        for negative in negatives
    ]
    served = {checked[row][0] for row, negatives in enumerate(chosen) if negatives}
    report = MiningReport(len(triplets), len(queries), len(queries) - len(served))
    return triplets, report


def write_triplets(rows: Iterable[dict[str, str]], path: str | os.PathLike[str]) -> None:
    """Write ``rows`` as JSON lines at ``path``, atomically: a temporary file beside it, flushed
    to disk, then renamed over it (a reader sees the old file or the whole new one)."""
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _check_pair(position: int, pair: Pair) -> tuple[str, str, Id | None]:
    """A pair as (query, positive, id or ``None``), or a ``TypeError`` naming its position."""
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) not in (2, 3):
        raise TypeError(
            f"pairs[{position}] must be (query, positive) or (query, positive, id), got {pair!r}"
        )
    query = check_text(f"pairs[{position}] query", pair[0])
    positive = check_text(f"pairs[{position}] positive", pair[1])
    return query, positive, pair[2] if len(pair) == 3 else None


def _positives_by_query(pairs: Sequence[tuple[str, str, Id | None]]) -> dict[str, _Positives]:
    """Each distinct query (first-seen order) and the positives of all its rows."""
    texts: dict[str, set[str]] = {}
    ids: dict[str, set[Id]] = {}
    for query, positive, doc_id in pairs:
        texts.setdefault(query, set()).add(_collapsed(positive))
        known = ids.setdefault(query, set())
        if doc_id is not None:
            known.add(doc_id)
    return {query: _Positives(frozenset(texts[query]), frozenset(ids[query])) for query in texts}


def _negatives(
    hits: Sequence[Hit], positives: _Positives, positive_score: float, options: MiningOptions
) -> list[str]:
    """The texts of the best-ranked hits that qualify as negatives, at most
    ``options.negatives``, without repeats."""
    ceiling = positive_score - options.margin
    kept: list[str] = []
    seen: set[str] = set()
    for hit in hits[options.min_rank - 1 : options.last_rank]:
        if hit.text is None or hit.id in positives.ids or hit.score > ceiling:
            continue
        key = _collapsed(hit.text)
        if key in positives.texts or key in seen:
            continue
        seen.add(key)
        kept.append(hit.text)
        if len(kept) == options.negatives:
            break
    return kept


def _collapsed(text: str) -> str:
    """``text`` with runs of whitespace made one space, and no leading or trailing space."""
    return " ".join(text.split())
