"""Retrieval quality against storage: SciFact nDCG@10 / recall@10 per compression setting.

One encoder (all-MiniLM-L6-v2, mean pooling, max_length 256: chosen for speed on CPU, 384
dimensions) encodes SciFact once; every setting then searches the same vectors with llmvec's own
:class:`~llmvec.FaissIndex`:

- float32 (exact), int8 with and without rescoring, binary with and without rescoring
  (oversample 4, rescoring vectors kept as float16);
- Matryoshka truncation to 64 / 128 / 256 dimensions (truncate, then normalise) and full.

Metrics come from pytrec_eval (``llmvec.evaluation.retrieval_metrics``). ``index_bytes`` is what
the searched index holds per vector; ``kept_bytes`` adds the float16 rescoring vectors. Writes
benchmarks/results/compression_quality.json and compression_quality.png (nDCG@10 against
index bytes per vector). Data is read from ../shared/data/scifact, never copied.

    nice python benchmarks/compression_quality.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from _report import DATA, RESULTS, machine, write_report

from llmvec import Encoder, FaissIndex, Hit
from llmvec.compress import bytes_per_vector, truncate
from llmvec.evaluation import encode_corpus, load_beir, retrieval_metrics

SCIFACT = DATA / "scifact"
MODEL = "all-minilm-l6-v2"
ENCODER_SETTINGS: dict[str, Any] = {"pooling": "mean", "max_length": 256}
K = 10
OVERSAMPLE = 4.0

#: name -> (dimension kept or None for all, FaissIndex precision, rescore)
SETTINGS: dict[str, tuple[int | None, str, bool]] = {
    "float32": (None, "float32", False),
    "int8": (None, "int8", False),
    "int8 + rescore": (None, "int8", True),
    "binary": (None, "binary", False),
    "binary + rescore": (None, "binary", True),
    "matryoshka 64": (64, "float32", False),
    "matryoshka 128": (128, "float32", False),
    "matryoshka 256": (256, "float32", False),
    "matryoshka full": (None, "float32", False),
}


def evaluate(
    encoder: Encoder,
    documents: np.ndarray,
    queries: np.ndarray,
    doc_ids: list[str],
    query_ids: list[str],
    qrels: dict[str, dict[str, int]],
    dim: int | None,
    precision: str,
    rescore: bool,
) -> dict[str, Any]:
    """Index the (truncated) documents at ``precision``, search every query, score the run."""
    kept = dim or encoder.dim
    spec = encoder.spec.replace(dim=kept, truncate_dim=dim)
    index = FaissIndex(spec=spec, precision=precision, rescore=rescore, oversample=OVERSAMPLE)
    index.add_embeddings(truncate(documents, kept), ids=doc_ids)
    start = time.perf_counter()
    hits = cast("list[list[Hit]]", index.search(truncate(queries, kept), k=K))
    seconds = time.perf_counter() - start
    run = {q: {str(h.id): h.score for h in row} for q, row in zip(query_ids, hits, strict=True)}
    index_bytes = bytes_per_vector(kept, "binary" if precision == "binary" else precision)
    return {
        "dim": kept,
        "precision": precision,
        "rescore": rescore,
        **retrieval_metrics(run, qrels, K),
        "index_bytes": index_bytes,
        "kept_bytes": index_bytes + (bytes_per_vector(kept, "float16") if rescore else 0),
        "search_seconds": round(seconds, 3),
    }


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """nDCG@10 against index bytes per vector (log scale); settings that land on the same point
    share one label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: list[list[str]] = []  # settings within 0.5 nDCG of each other at the same size
    for name, row in results.items():
        for group in groups:
            first = results[group[0]]
            if (
                first["index_bytes"] == row["index_bytes"]
                and abs(first["ndcg@10"] - row["ndcg@10"]) < 0.5
            ):
                group.append(name)
                break
        else:
            groups.append([name])
    figure, axes = plt.subplots(figsize=(8, 5))
    for names in groups:
        rows = [results[n] for n in names]
        marker = "s" if all(n.startswith("matryoshka") for n in names) else "o"
        label = " / ".join(f"{n}: {r['ndcg@10']:.1f}" for n, r in zip(names, rows, strict=True))
        label += f"  ({rows[0]['index_bytes']} B)"
        axes.scatter(
            rows[0]["index_bytes"],
            max(r["ndcg@10"] for r in rows),
            marker=marker,
            s=50,
            label=label,
        )
    axes.legend(
        loc="lower right", fontsize=8, title="setting: nDCG@10 (bytes/vector)", title_fontsize=8
    )
    ticks = sorted({row["index_bytes"] for row in results.values()})
    axes.set_xscale("log")
    axes.set_xticks(ticks, [str(t) for t in ticks])
    axes.minorticks_off()
    axes.set_xlabel("bytes per vector in the searched index (log scale)")
    axes.set_ylabel("SciFact nDCG@10")
    axes.set_title(f"Compression vs retrieval quality: {MODEL} (384-d), SciFact test")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT, help="BEIR-layout folder")
    parser.add_argument("--cache", type=Path, help="reuse / store the corpus vectors (.npy)")
    args = parser.parse_args()

    data = load_beir(args.data)
    encoder = Encoder(MODEL, **ENCODER_SETTINGS)
    start = time.perf_counter()
    if args.cache is not None and args.cache.is_file():
        documents = np.load(args.cache)
        encoding = f"read from {args.cache.name} (--cache)"
    else:
        documents = encode_corpus(encoder, data)
        encoding = f"{time.perf_counter() - start:.0f} s"
        if args.cache is not None:
            np.save(args.cache, documents)
    query_ids = list(data.queries)
    queries = np.asarray(encoder.encode_queries([data.queries[q] for q in query_ids]))
    doc_ids = list(data.corpus)
    results = {
        name: evaluate(encoder, documents, queries, doc_ids, query_ids, data.qrels, *setting)
        for name, setting in SETTINGS.items()
    }
    reference = results["float32"]["ndcg@10"]
    for row in results.values():
        row["ndcg@10_vs_float32"] = round(row["ndcg@10"] / reference, 4)
        row["compression_vs_float32"] = round(
            results["float32"]["index_bytes"] / row["index_bytes"], 1
        )
    output = {
        "benchmark": "compression_quality",
        "data": "SciFact (BEIR layout, test qrels) from ../shared/data/scifact",
        "documents": len(doc_ids),
        "queries": len(query_ids),
        "model": MODEL,
        "model_note": "all-MiniLM-L6-v2 is used for speed on CPU; it is not Matryoshka-trained, "
        "so truncated dimensions lose more than they would with a Matryoshka model",
        "encoder": ENCODER_SETTINGS,
        "k": K,
        "oversample": OVERSAMPLE,
        "rescore_vectors": "float16",
        "metrics": "pytrec_eval ndcg_cut_10 and recall_10, mean over judged queries, x100",
        "corpus_encoding": encoding,
        "machine": machine(),
        "results": results,
        "spec": encoder.spec.to_dict(),
    }
    write_report(RESULTS / "compression_quality.json", output)
    plot(results, RESULTS / "compression_quality.png")
    for name, row in results.items():
        print(
            f"{name:18s} nDCG@10 {row['ndcg@10']:6.2f}  recall@10 {row['recall@10']:6.2f}  "
            f"{row['index_bytes']:5d} B/vector  ({row['ndcg@10_vs_float32']:.1%} of float32)"
        )


if __name__ == "__main__":
    main()
