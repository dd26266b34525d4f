"""Search speed of FaissIndex: binary + rescore against float32 exact search.

100,000 synthetic unit vectors of dimension 576 (SmolLM2-135M's hidden size) shaped like LLM
embeddings (see :func:`realistic_vectors`); 1,000 queries mix a document with another draw.
Each setting answers them one at a time (online search, k=10) and as one batch; quality is
recall@10 against the exact float32 results. FAISS runs on one thread by default
(``--threads``), and each setting keeps its best of alternating rounds, so the numbers compare
the algorithms rather than the machine's load. Writes benchmarks/results/search_speed.json.

    nice python benchmarks/search_speed.py
"""

from __future__ import annotations

import argparse
import time
from typing import Any, cast

import faiss
import numpy as np
from _report import RESULTS, machine, write_report

from llmvec import FaissIndex, Hit
from llmvec.spec import EmbeddingSpec

OUTPUT = RESULTS / "search_speed.json"
DIM = 576
K = 10

#: name -> FaissIndex arguments
SETTINGS: dict[str, dict[str, Any]] = {
    "float32 flat": {"precision": "float32", "kind": "flat"},
    "binary flat + rescore": {"precision": "binary", "kind": "flat", "oversample": 4.0},
    "binary flat + rescore, oversample 10": {
        "precision": "binary",
        "kind": "flat",
        "oversample": 10.0,
    },
    "binary hnsw + rescore": {"precision": "binary", "kind": "hnsw", "oversample": 4.0},
}


def realistic_vectors(
    n: int, queries: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors shaped like LLM embeddings: a shared offset (anisotropy), a rank-48 latent
    with a power-law spectrum, and isotropic noise. Queries mix a document with another draw.

    The constants make binary + rescore (oversample 4) find about 87% of the exact top 10 here;
    on real all-MiniLM-L6-v2 SciFact vectors the same index finds about 92%.
    """
    rng = np.random.default_rng(seed)
    rank, decay, noise = 48, 0.7, 0.2
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)
    scales = np.arange(1, rank + 1, dtype=np.float32) ** -decay
    scales /= np.linalg.norm(scales)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 0.7 / np.linalg.norm(offset)

    def draw(count: int) -> np.ndarray:
        latent = rng.standard_normal((count, rank)).astype(np.float32) * scales
        x = offset + latent @ basis
        x += noise / np.sqrt(dim) * rng.standard_normal((count, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    documents = draw(n)
    mixed = documents[rng.integers(0, n, queries)] + 0.5 * (draw(queries) - offset)
    return documents, mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def timed_search(
    index: FaissIndex, queries: np.ndarray, one_by_one: bool
) -> tuple[float, list[list[Hit]]]:
    """Queries per second, and the hits."""
    start = time.perf_counter()
    if one_by_one:
        hits = [cast("list[Hit]", index.search(q, k=K)) for q in queries]
    else:
        hits = cast("list[list[Hit]]", index.search(queries, k=K))
    return len(queries) / (time.perf_counter() - start), hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1, help="FAISS (OpenMP) threads (1)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, best kept (3)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)

    documents, queries = realistic_vectors(args.vectors, args.queries, DIM)
    spec = EmbeddingSpec(model="synthetic", dim=DIM)
    ids = list(range(len(documents)))
    indexes: dict[str, FaissIndex] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, settings in SETTINGS.items():
        indexes[name] = FaissIndex(spec=spec, **settings)
        start = time.perf_counter()
        indexes[name].add_embeddings(documents, ids=ids)
        results[name] = {**settings, "build_seconds": round(time.perf_counter() - start, 2)}
    # Rounds alternate the settings, and each keeps its best round: on a shared machine this
    # compares the algorithms rather than whatever else was running at the time.
    best: dict[tuple[str, bool], float] = {}
    hits: dict[str, list[list[Hit]]] = {}
    for _ in range(args.rounds):
        for name, index in indexes.items():
            for one_by_one in (True, False):
                qps, hits[name] = timed_search(index, queries, one_by_one)
                best[name, one_by_one] = max(qps, best.get((name, one_by_one), 0.0))
    exact = [[h.id for h in row] for row in hits["float32 flat"]]
    for name, row in results.items():
        found = [[h.id for h in hit_row] for hit_row in hits[name]]
        recall = np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact, strict=True)])
        row["qps_one_query_at_a_time"] = round(best[name, True], 1)
        row["qps_batch_of_all_queries"] = round(best[name, False], 1)
        row["recall@10_vs_float32_flat"] = round(float(recall), 4)
        print(
            f"{name:38s} {best[name, True]:9.1f} q/s single  {best[name, False]:9.1f} q/s "
            f"batch  recall@10 {recall:.3f}"
        )
    base = results["float32 flat"]
    for row in results.values():
        for mode in ("qps_one_query_at_a_time", "qps_batch_of_all_queries"):
            row[f"speedup_{mode[4:]}"] = round(row[mode] / base[mode], 2)
    output = {
        "benchmark": "search_speed",
        "vectors": args.vectors,
        "queries": args.queries,
        "dim": DIM,
        "k": K,
        "data": "synthetic unit vectors: shared offset + rank-48 power-law latent + noise; "
        "queries mix a document with another draw (see realistic_vectors)",
        "rescore_vectors": "float16",
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "timing": f"best of {args.rounds} alternating rounds per setting",
        "machine": machine(),
        "results": results,
    }
    write_report(OUTPUT, output)


if __name__ == "__main__":
    main()
