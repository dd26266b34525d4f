"""Hybrid search quality: SciFact nDCG@10 of dense, sparse (BM25) and hybrid search per store.

For all-MiniLM-L6-v2 (mean, max_length 256) and SmolLM2-135M KE (``Encoder("smollm2",
template="ke")``), SciFact's 5,183 abstracts are encoded once and stored, with their texts, in
a :class:`~llmvec.FaissIndex` (BM25 by bm25s) and a Qdrant Edge :class:`~llmvec.QdrantIndex`
(BM25 term weights under Qdrant's IDF modifier with ``avg_len`` the corpus' average, as bm25s
computes it; optimized). Each store is searched with ``mode="dense"``, ``"sparse"`` and
``"hybrid"`` (weighted Reciprocal Rank Fusion, 100 candidates per list).

The hybrid weights (dense, sparse) and RRF's rank offset ``rrf_k`` are chosen per model and
store on a **dev** split cut from SciFact's *train* queries (a seeded sample of 300 of the 809
in ../shared/data/train/scifact_qrels_train.tsv): the grid's fusions come from the dev
candidate lists. Test figures (the 300 BEIR test queries) are reported as they come out, for
the equal weights (1, 1) at rrf_k 60 (the API's default) and the dev-chosen setting; no
setting is chosen by a test figure. Metrics are pytrec_eval's
(``llmvec.evaluation.retrieval_metrics``), scored by rank so that fused ties keep llmvec's order.
Results merge into benchmarks/results/hybrid.json. Data is read from ../shared/data, never
copied.

    nice python benchmarks/hybrid.py                       # both models
    nice python benchmarks/hybrid.py --models all-minilm-l6-v2
    nice python benchmarks/hybrid.py --models --trained FOLDER --query-instruction "..." \
        --dtype bfloat16 --max-length 256
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from _report import (
    DATA,
    RESULTS,
    SCIFACT_DEV_SEED,
    SCIFACT_TRAIN_QRELS,
    machine,
    scifact_dev_query_ids,
    versions,
    write_report,
)

from llmvec import Encoder, FaissIndex, Hit, QdrantIndex
from llmvec.evaluation import RetrievalData, encode_corpus, load_beir, load_qrels, retrieval_metrics
from llmvec.index.base import BaseIndex
from llmvec.index.bm25 import BM25Settings
from llmvec.index.fusion import candidates, reciprocal_rank_fusion
from llmvec.spec import EmbeddingSpec

SCIFACT = DATA / "scifact"
OUTPUT = RESULTS / "hybrid.json"
K = 10
RRF_K = 60
#: RRF rank offsets tried on dev with each weight pair (60, the usual one, is the API default).
RRF_KS = (10, 30, 60, 100)
#: name -> (packaged model, Encoder arguments)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "all-minilm-l6-v2": ("all-minilm-l6-v2", {"pooling": "mean", "max_length": 256}),
    "smollm2-ke": ("smollm2", {"template": "ke"}),
}
STORES = ("faiss", "qdrant-edge")
#: dense / sparse weight ratios tried on dev (as (r, 1) up to 1, then (1, 1 / r)).
RATIOS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def grid() -> list[tuple[float, float]]:
    return [(r, 1.0) if r <= 1 else (1.0, round(1.0 / r, 4)) for r in RATIOS]


class PrecomputedQueries:
    """An encoder whose query vectors were computed once (the stores encode text queries at
    every search; the grid and the modes search the same texts many times)."""

    def __init__(self, encoder: Encoder, texts: Sequence[str]) -> None:
        self.inner = encoder
        unique = list(dict.fromkeys(texts))
        vectors = np.asarray(encoder.encode_queries(unique))
        self.cache = dict(zip(unique, vectors, strict=True))

    @property
    def spec(self) -> EmbeddingSpec:
        return self.inner.spec

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode_queries(self, texts: str | Sequence[str], *, batch_size: int | None = None) -> Any:
        items = [texts] if isinstance(texts, str) else list(texts)
        return np.stack([self.cache[text] for text in items])

    def encode_documents(self, texts: str | Sequence[str], *, batch_size: int | None = None) -> Any:
        return self.inner.encode_documents(texts, batch_size=batch_size)


def dev_data(test: RetrievalData) -> RetrievalData:
    """The dev split: a seeded sample of SciFact's train queries (none is a test query)."""
    qrels = load_qrels(SCIFACT_TRAIN_QRELS)
    texts = {}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts[str(row["_id"])] = str(row["text"])
    chosen = scifact_dev_query_ids()
    assert not set(chosen) & set(test.queries), "a dev query is a test query"
    return RetrievalData(
        corpus=test.corpus,
        queries={q: texts[q] for q in chosen},
        qrels={q: qrels[q] for q in chosen},
    )


def run_of(query_ids: list[str], rows: list[list[Hit]]) -> dict[str, dict[str, float]]:
    """A pytrec_eval run scored by rank (fused scores can tie; the rank is llmvec's order)."""
    return {
        qid: {str(hit.id): float(len(row) - rank) for rank, hit in enumerate(row)}
        for qid, row in zip(query_ids, rows, strict=True)
    }


def metrics(data: RetrievalData, rows: list[list[Hit]]) -> dict[str, float]:
    found = retrieval_metrics(run_of(list(data.queries), rows), data.qrels, K)
    return {name: round(value, 2) for name, value in found.items()}


def corpus_bm25(data: RetrievalData) -> BM25Settings:
    """BM25 settings whose ``avg_len`` is the corpus' average length in analyzed terms, as
    FAISS stores (bm25s) compute it; Qdrant stores take it as a setting."""
    analyzer = BM25Settings().analyzer()
    lengths = [len(analyzer.terms(text)) for text in data.corpus.values()]
    return BM25Settings(avg_len=round(sum(lengths) / len(lengths), 1))


def build(
    store: str,
    encoder: PrecomputedQueries,
    data: RetrievalData,
    vectors: np.ndarray,
    folder: Path,
    bm25: BM25Settings,
) -> BaseIndex:
    ids, texts = list(data.corpus), list(data.corpus.values())
    index: BaseIndex
    if store == "faiss":
        index = FaissIndex(encoder)
    else:
        index = QdrantIndex(encoder, path=folder / "edge", engine="edge", sparse=bm25)
    index.add_embeddings(vectors, ids=ids, texts=texts)
    index.optimize()  # Qdrant Edge: HNSW and the sparse index; FAISS: nothing to do
    index.search("warm-up", k=1, mode="sparse")  # FAISS builds its BM25 index at first use
    return index


def search(index: BaseIndex, texts: list[str], k: int, **options: Any) -> list[list[Hit]]:
    return cast("list[list[Hit]]", index.search(texts, k=k, **options))


def evaluate_store(index: BaseIndex, dev: RetrievalData, test: RetrievalData) -> dict[str, Any]:
    dev_texts, test_texts = list(dev.queries.values()), list(test.queries.values())
    depth = candidates(K)
    lists = [search(index, dev_texts, depth), search(index, dev_texts, depth, mode="sparse")]
    dev_scores = {}
    for rrf_k in RRF_KS:
        for weights in grid():
            fused = [
                reciprocal_rank_fusion([lists[0][row], lists[1][row]], weights, rrf_k, K)
                for row in range(len(dev_texts))
            ]
            dev_scores[f"{weights[0]},{weights[1]},{rrf_k}"] = metrics(dev, fused)["ndcg@10"]
    best = max(dev_scores, key=lambda name: dev_scores[name])  # first of equals: grid order
    *chosen_weights, chosen_k = (float(value) for value in best.split(","))
    chosen = (chosen_weights[0], chosen_weights[1])
    start = time.perf_counter()
    tuned = search(index, test_texts, K, mode="hybrid", weights=chosen, rrf_k=chosen_k)
    hybrid_seconds = time.perf_counter() - start
    # The API's hybrid search is the fusion of its own two candidate lists.
    test_lists = [search(index, test_texts, depth), search(index, test_texts, depth, mode="sparse")]
    offline = [
        reciprocal_rank_fusion([test_lists[0][row], test_lists[1][row]], chosen, chosen_k, K)
        for row in range(len(test_texts))
    ]
    same = [[h.id for h in row] for row in offline] == [[h.id for h in row] for row in tuned]
    return {
        "test": {
            "dense": metrics(test, search(index, test_texts, K)),
            "sparse": metrics(test, search(index, test_texts, K, mode="sparse")),
            "hybrid_1_1": metrics(test, search(index, test_texts, K, mode="hybrid")),
            "hybrid_dev_weights": metrics(test, tuned),
        },
        "dev": {
            "dense": metrics(dev, [row[:K] for row in lists[0]]),
            "sparse": metrics(dev, [row[:K] for row in lists[1]]),
            "hybrid_ndcg@10_by_weights_and_rrf_k": dev_scores,
        },
        "weights_chosen_on_dev": list(chosen),
        "rrf_k_chosen_on_dev": chosen_k,
        "hybrid_matches_the_fusion_of_its_lists": same,
        "hybrid_seconds_per_query": round(hybrid_seconds / len(test_texts), 4),
    }


def run_model(
    name: str, report: dict[str, Any], test: RetrievalData, dev: RetrievalData, bm25: BM25Settings
) -> None:
    model, arguments = MODELS[name]
    encoder = Encoder(model, **arguments)
    start = time.perf_counter()
    vectors = encode_corpus(encoder, test)
    corpus_seconds = time.perf_counter() - start
    queries = PrecomputedQueries(encoder, [*dev.queries.values(), *test.queries.values()])
    entry: dict[str, Any] = {
        "model": model,
        "encoder": arguments,
        "spec": encoder.spec.to_dict(),
        "corpus_seconds": round(corpus_seconds, 1),
        "stores": {},
    }
    with tempfile.TemporaryDirectory(prefix="llmvec-hybrid-") as folder:
        for store in STORES:
            start = time.perf_counter()
            index = build(store, queries, test, vectors, Path(folder), bm25)
            built = time.perf_counter() - start
            try:
                result = evaluate_store(index, dev, test)
            finally:
                index.close()
            result["build_seconds"] = round(built, 1)
            entry["stores"][store] = result
            figures = result["test"]
            print(
                f"{name:17s} {store:12s} test nDCG@10: dense {figures['dense']['ndcg@10']:6.2f}"
                f"  sparse {figures['sparse']['ndcg@10']:6.2f}"
                f"  hybrid(1,1) {figures['hybrid_1_1']['ndcg@10']:6.2f}"
                f"  hybrid{tuple(result['weights_chosen_on_dev'])}"
                f" rrf_k {result['rrf_k_chosen_on_dev']:g}"
                f" {figures['hybrid_dev_weights']['ndcg@10']:6.2f}"
            )
    report["models"][name] = entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--trained", type=Path, help="also a trained folder (llmvec train), as 'trained:NAME'"
    )
    parser.add_argument("--query-instruction", help="the trained folder's query instruction")
    parser.add_argument("--dtype", help="the trained folder's dtype (bfloat16: as training.py)")
    parser.add_argument("--max-length", type=int, help="the trained folder's token limit")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = load_beir(SCIFACT)
    dev = dev_data(test)
    bm25 = corpus_bm25(test)
    report: dict[str, Any] = {"benchmark": "hybrid", "models": {}}
    if OUTPUT.is_file():
        report["models"].update(json.loads(OUTPUT.read_text()).get("models", {}))
    names = list(args.models)
    if args.trained is not None:
        name = f"trained:{args.trained.name}"
        options = {"query_instruction": args.query_instruction, "dtype": args.dtype,
                   "max_length": args.max_length}  # fmt: skip
        MODELS[name] = (str(args.trained), {k: v for k, v in options.items() if v is not None})
        names.append(name)
    for name in names:
        run_model(name, report, test, dev, bm25)
        report.update(
            data={
                "corpus": f"SciFact, {len(test.corpus)} documents (../shared/data/scifact)",
                "test": f"{len(test.queries)} BEIR test queries (qrels/test.tsv)",
                "dev": f"{len(dev.queries)} of SciFact's train queries, random.Random"
                f"({SCIFACT_DEV_SEED}).sample (../shared/data/train/scifact_qrels_train.tsv)",
            },
            search={
                "k": K,
                "rrf_k_of_hybrid_1_1": RRF_K,
                "rrf_k_grid": list(RRF_KS),
                "candidates_per_list": candidates(K),
                "weight_grid_dense_sparse": [list(w) for w in grid()],
                "bm25": "k1 1.2, b 0.75, English stopwords, Snowball English stemmer; FAISS: "
                "bm25s with the corpus' average length; Qdrant Edge: term weights under "
                "Qdrant's IDF modifier, avg_len set to the corpus' average length "
                f"({bm25.avg_len} terms)",
            },
            metrics="pytrec_eval ndcg_cut_10 and recall_10 x100, mean over judged queries",
            versions=versions("bm25s", "PyStemmer", "faiss-cpu", "qdrant-edge-py"),
            machine=machine(),
            threads=args.threads,
        )
        write_report(OUTPUT, report)


if __name__ == "__main__":
    main()
