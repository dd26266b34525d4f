"""Quality on real data: STS Spearman and BEIR-style retrieval nDCG@k / recall@k.

Readers for the two public layouts used by the benchmarks (the STS Benchmark's tab-separated
files and BEIR's ``corpus.jsonl`` / ``queries.jsonl`` / ``qrels/<split>.tsv`` folders) and two
evaluators that run an :class:`~llmvec.Encoder` over them; retrieval searches llmvec's own
:class:`~llmvec.index.FaissIndex`. Metrics come from trusted libraries: ``scipy.stats.spearmanr``
for STS and ``pytrec_eval`` (the TREC evaluation tool, as BEIR uses) for retrieval.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from llmvec.compress import check_precision, normalize, truncate
from llmvec.encoding.templates import resolve_instruction_format
from llmvec.optional import require
from llmvec.spec import EmbeddingSpec
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.encoder import Encoder
    from llmvec.index.records import Hit

logger = logging.getLogger(__name__)

#: The STS Benchmark's fields, in file order; rows may carry more columns after these.
STS_FIELDS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")
STS_MAX_SCORE = 5.0


class DataFormatError(ValueError):
    """An evaluation file does not have the expected layout (names the file and line)."""


@dataclass(frozen=True)
class STSPair:
    """One STS row: two sentences and their gold similarity (0 to 5)."""

    sentence1: str
    sentence2: str
    score: float


@dataclass(frozen=True)
class RetrievalData:
    """A BEIR-layout data set: documents, the queries that have judgements, and the judgements.

    Attributes:
        corpus: document id -> text (``title`` and ``text`` joined by one space, as BEIR does).
        queries: query id -> text, restricted to the queries present in ``qrels``.
        qrels: query id -> {document id -> relevance grade}.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


# ---------------------------------------------------------------------------------- readers
def load_sts(path: str | Path) -> list[STSPair]:
    """Read an STS-B-layout file: tab-separated, no quoting, fields 0-6 used, extra ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: a row has fewer than 7 fields or a score that is not a number in
            [0, 5]; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STS file {str(path)!r} does not exist")
    pairs: list[STSPair] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < len(STS_FIELDS):
                raise DataFormatError(
                    f"{path}:{number}: expected at least {len(STS_FIELDS)} tab-separated fields "
                    f"({', '.join(STS_FIELDS)}), found {len(fields)}"
                )
            try:
                score = float(fields[4])
            except ValueError:
                raise DataFormatError(
                    f"{path}:{number}: field 4 (score) must be a number, got {fields[4]!r}"
                ) from None
            if not 0.0 <= score <= STS_MAX_SCORE:
                raise DataFormatError(
                    f"{path}:{number}: score {score} is outside [0, {STS_MAX_SCORE:g}]"
                )
            pairs.append(STSPair(fields[5], fields[6], score))
    if not pairs:
        raise DataFormatError(f"{path}: no STS rows found")
    return pairs


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _jsonl_rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """JSON objects of a ``.jsonl`` (or ``.jsonl.gz``) file, each checked for ``required`` keys."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{number}: expected a JSON object, got {row!r:.80}")
            missing = [key for key in required if key not in row]
            if missing:
                raise DataFormatError(
                    f"{path}:{number}: missing key(s) {missing}; each line needs {list(required)}"
                )
            yield row


def _find_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{str(folder)!r} has none of {list(names)}")


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels file: ``query-id  corpus-id  score`` (tab-separated; header optional).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: a row without three fields or with a non-integer score, or no
            judgements at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"qrels file {str(path)!r} does not exist")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 3:
                raise DataFormatError(
                    f"{path}:{number}: expected 3 tab-separated fields "
                    f"(query-id, corpus-id, score), found {len(fields)}"
                )
            try:
                grade = int(fields[2])
            except ValueError:
                if number == 1:  # the header line: query-id corpus-id score
                    continue
                raise DataFormatError(
                    f"{path}:{number}: field 3 (score) must be an integer, got {fields[2]!r}"
                ) from None
            qrels.setdefault(fields[0], {})[fields[1]] = grade
    if not qrels:
        raise DataFormatError(f"{path}: no relevance judgements found (empty qrels)")
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> RetrievalData:
    """Read a BEIR-layout folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]`` and
    ``qrels/<split>.tsv``.

    Only queries with judgements are kept (as BEIR does). Document text is ``title + " " + text``
    stripped, or ``text`` alone when there is no title.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder {str(folder)!r} does not exist")
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    corpus_path = _find_file(folder, ("corpus.jsonl", "corpus.jsonl.gz"))
    corpus: dict[str, str] = {}
    for row in _jsonl_rows(corpus_path, ("_id", "text")):
        title = row.get("title") or ""
        corpus[str(row["_id"])] = (f"{title} {row['text']}" if title else row["text"]).strip()
    queries_path = _find_file(folder, ("queries.jsonl", "queries.jsonl.gz"))
    all_queries = {
        str(row["_id"]): str(row["text"]) for row in _jsonl_rows(queries_path, ("_id", "text"))
    }
    missing_queries = sorted(set(qrels) - set(all_queries))
    if missing_queries:
        raise DataFormatError(
            f"{queries_path}: {len(missing_queries)} query id(s) judged in qrels/{split}.tsv have "
            f"no text, e.g. {missing_queries[:5]}"
        )
    unknown_docs = {doc for judged in qrels.values() for doc in judged} - set(corpus)
    if unknown_docs:
        logger.warning(
            "%d judged document id(s) are not in %s, e.g. %s",
            len(unknown_docs),
            corpus_path,
            sorted(unknown_docs)[:5],
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


# ---------------------------------------------------------------------------------- metrics
_INSTALL_EVAL = "llmvec.evaluation needs {distribution}: pip install 'llmvec[eval]'"


def evaluate_sts(
    encoder: Encoder, path: str | Path, batch_size: int | None = None
) -> dict[str, Any]:
    """Spearman correlation (x100) between the cosine similarity of each pair and its gold score.

    Each distinct sentence is encoded once, with :meth:`Encoder.encode` and the encoder's own
    recipe (no instruction), so the returned spec describes the vectors that were scored.

    Returns:
        ``{"task": "sts", "data", "pairs", "spearman", "spec"}``.
    """
    spearmanr = require("scipy.stats", _INSTALL_EVAL.format(distribution="scipy")).spearmanr
    pairs = load_sts(path)
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    position = {sentence: i for i, sentence in enumerate(sentences)}
    vectors = normalize(encoder.encode(sentences, batch_size=batch_size))
    left = vectors[[position[p.sentence1] for p in pairs]]
    right = vectors[[position[p.sentence2] for p in pairs]]
    cosines = np.sum(left * right, axis=1)
    gold = np.array([p.score for p in pairs])
    correlation = float(spearmanr(cosines, gold).statistic)
    if math.isnan(correlation):
        raise ValueError(f"Spearman correlation is undefined on {path} (constant scores?)")
    return {
        "task": "sts",
        "data": str(path),
        "pairs": len(pairs),
        "spearman": 100.0 * correlation,
        "spec": encoder.spec.to_dict(),
    }


def retrieval_metrics(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], k: int = 10
) -> dict[str, float]:
    """Mean nDCG@k and recall@k (x100) of ``run`` against ``qrels``, computed by pytrec_eval.

    Every judged query counts; a query absent from ``run`` scores 0.
    """
    pytrec_eval = require("pytrec_eval", _INSTALL_EVAL.format(distribution="pytrec-eval-terrier"))
    measures = {f"ndcg_cut.{k}", f"recall.{k}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(
        {qid: run.get(qid, {}) for qid in qrels}
    )
    count = len(qrels)
    return {
        f"ndcg@{k}": 100.0 * sum(q.get(f"ndcg_cut_{k}", 0.0) for q in per_query.values()) / count,
        f"recall@{k}": 100.0 * sum(q.get(f"recall_{k}", 0.0) for q in per_query.values()) / count,
    }


def retrieve(
    document_vectors: np.ndarray,
    doc_ids: list[str],
    query_vectors: np.ndarray,
    query_ids: list[str],
    k: int,
    spec: EmbeddingSpec,
    precision: str = "float32",
) -> dict[str, dict[str, float]]:
    """The run to score: each query's ``k`` best documents (id -> score) from llmvec's own
    exact :class:`~llmvec.index.FaissIndex` at ``precision`` (``int8`` and ``binary`` rescore
    their candidates with the kept float vectors, as the index does for users)."""
    from llmvec.index.faiss import FaissIndex

    index = FaissIndex(spec=spec, precision=precision, sparse=False)  # vectors only, no texts
    index.add_embeddings(document_vectors, ids=doc_ids)
    # A matrix of queries gives one list of hits per query.
    hits = cast("list[list[Hit]]", index.search(query_vectors, k=k))
    return {
        qid: {str(hit.id): hit.score for hit in row}
        for qid, row in zip(query_ids, hits, strict=True)
    }


def encode_corpus(
    encoder: Encoder, data: RetrievalData, batch_size: int | None = None
) -> np.ndarray:
    """Document vectors (:meth:`Encoder.encode_documents`), one row per ``data.corpus`` entry."""
    texts = list(data.corpus.values())
    return np.asarray(encoder.encode_documents(texts, batch_size=batch_size))


def _check_retrieval_options(
    encoder: Encoder, k: int, precision: str, truncate_dim: int | None
) -> None:
    from llmvec.index.faiss import PRECISIONS

    check_positive("k", k)
    if truncate_dim is not None and not 1 <= truncate_dim <= encoder.dim:
        raise ValueError(f"truncate_dim must be between 1 and {encoder.dim}, got {truncate_dim!r}")
    check_precision(precision, PRECISIONS)


def evaluate_encoded_corpus(
    encoder: Encoder,
    data: RetrievalData,
    document_vectors: np.ndarray,
    k: int = 10,
    precision: str = "float32",
    truncate_dim: int | None = None,
    query_instruction: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """nDCG@k and recall@k (x100) with documents already encoded by :func:`encode_corpus`.

    Queries go through :meth:`Encoder.encode_queries` (``query_instruction`` overrides the
    encoder's). With ``truncate_dim`` documents and queries keep their first dimensions and
    are normalised again (Matryoshka: truncate, then normalise). Search runs in llmvec's
    :class:`~llmvec.index.FaissIndex` at ``precision``. One corpus encoding can serve
    several query instructions or dimensions this way.
    """
    _check_retrieval_options(encoder, k, precision, truncate_dim)
    if len(document_vectors) != len(data.corpus):
        raise ValueError(
            f"got {len(document_vectors)} document vectors for {len(data.corpus)} documents"
        )
    doc_ids = list(data.corpus)
    query_ids = list(data.queries)
    queries = np.asarray(
        encoder.encode_queries(
            [data.queries[q] for q in query_ids],
            instruction=query_instruction,
            batch_size=batch_size,
        )
    )
    # Cosine scores: unit vectors (after Matryoshka truncation), whatever the encoder's normalize.
    dim = truncate_dim or encoder.dim
    documents, queries = truncate(document_vectors, dim), truncate(queries, dim)
    spec = encoder.spec.replace(
        truncate_dim=truncate_dim or encoder.spec.truncate_dim, dim=truncate_dim or encoder.dim
    )
    if query_instruction is not None:
        spec = spec.replace(
            query_instruction=query_instruction,
            instruction_format=resolve_instruction_format(encoder.instruction_format),
        )
    run = retrieve(documents, doc_ids, queries, query_ids, k, spec, precision)
    return {
        "task": "retrieval",
        "documents": len(doc_ids),
        "queries": len(query_ids),
        "precision": precision,
        "truncate_dim": truncate_dim,
        **retrieval_metrics(run, data.qrels, k),
        "spec": spec.replace(precision=precision).to_dict(),
    }


def evaluate_retrieval(
    encoder: Encoder,
    folder: str | Path,
    k: int = 10,
    precision: str = "float32",
    truncate_dim: int | None = None,
    query_instruction: str | None = None,
    split: str = "test",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """nDCG@k and recall@k (x100) of the encoder on a BEIR-layout folder.

    Reads the folder (:func:`load_beir`), encodes its documents (:func:`encode_corpus`) and
    scores the judged queries (:func:`evaluate_encoded_corpus`, which documents the options).
    """
    _check_retrieval_options(encoder, k, precision, truncate_dim)
    data = load_beir(folder, split)
    result = evaluate_encoded_corpus(
        encoder,
        data,
        encode_corpus(encoder, data, batch_size),
        k=k,
        precision=precision,
        truncate_dim=truncate_dim,
        query_instruction=query_instruction,
        batch_size=batch_size,
    )
    return {**result, "data": str(folder), "split": split}
