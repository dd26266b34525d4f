"""The dev score a run keeps its best checkpoint by: Spearman on an STS file, or nDCG@10 on a
retrieval split cut from the training pairs (its positives and negatives are the corpus)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets

from llmvec.encoder import Encoder
from llmvec.evaluation import RetrievalData, encode_corpus, evaluate_encoded_corpus, evaluate_sts

DevScore = Callable[[], dict[str, float]]


def sts_dev(encoder: Encoder, path: str | Path) -> DevScore:
    """Spearman x100 on ``path`` (STS-B layout) as ``score``."""

    def score() -> dict[str, float]:
        spearman = float(evaluate_sts(encoder, path)["spearman"])
        return {"score": spearman, "sts_spearman": spearman}

    return score


def retrieval_data(rows: datasets.Dataset) -> RetrievalData:
    """Queries, a corpus of every positive and negative, and the positives as judgements."""
    queries: dict[str, str] = {}
    documents: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for row in rows:
        query_id = queries.setdefault(row["query"], f"q{len(queries)}")
        for text in (row["positive"], row["negative"]):
            if text:
                documents.setdefault(text, f"d{len(documents)}")
        qrels.setdefault(query_id, {})[documents[row["positive"]]] = 1
    return RetrievalData(
        corpus={doc_id: text for text, doc_id in documents.items()},
        queries={query_id: text for text, query_id in queries.items()},
        qrels=qrels,
    )


def retrieval_dev(encoder: Encoder, rows: datasets.Dataset, instruction: str | None) -> DevScore:
    """nDCG@10 x100 on the dev rows as ``score`` (queries with ``instruction``)."""
    data = retrieval_data(rows)

    def score() -> dict[str, float]:
        result = evaluate_encoded_corpus(
            encoder, data, encode_corpus(encoder, data), k=10, query_instruction=instruction
        )
        return {"score": float(result["ndcg@10"]), "ndcg@10": float(result["ndcg@10"])}

    return score
