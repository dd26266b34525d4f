"""Sentences per second on Ray Data with 1 and 2 encoder actors, against the single-process
Encoder, on the same sentences, in the same run; then a plan for a 100-million-document corpus.

Single process: ``encode_documents`` after a warm-up, with torch's default threads and with one
thread (a Ray actor with ``num_cpus=1`` gets ``OMP_NUM_THREADS=1``, so one thread is the fair
per-core comparison). Ray: :func:`llmvec.ray.embed` streamed to the driver; ``end_to_end``
counts everything (column check, encoder probe, actor start-up and model loading), ``steady``
counts the rows that arrive after the first batch over the time from that first batch to the
last. The four measurements are interleaved and repeated ``--repeats`` times; the best of each
is kept and all are recorded, with the load average: the machine is shared. The plan for 100
million documents starts from one actor's steady rate.

Writes benchmarks/results/ray_scaling.json. Run in the main environment with the ray extra.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import ray
import torch
from _report import DATA, RESULTS, machine, write_report

from llmvec import Encoder
from llmvec.evaluation import load_sts
from llmvec.ray import embed

STS_TRAIN = DATA / "stsbenchmark" / "sts-train.csv"
OUTPUT = RESULTS / "ray_scaling.json"
BATCH_SIZE = 128
#: The corpus of the plan, and the wall-clock it should take.
PLAN_DOCUMENTS = 100_000_000
PLAN_TARGET_HOURS = 24.0
#: Qdrant's RAM rule of thumb (capacity-planning docs): points * dim * 4 bytes * 1.5.
QDRANT_OVERHEAD = 1.5
#: A shard size that keeps moves and snapshots quick; Qdrant leaves the choice to the user.
SHARD_POINTS = 10_000_000
#: Length of a typical RAG chunk, for the second plan.
CHUNK_TOKENS = 256


def sentences(count: int) -> list[str]:
    """``count`` STS-B training sentences (both sides of each pair, in file order)."""
    pairs = load_sts(STS_TRAIN)
    texts = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    if count > len(texts):
        raise SystemExit(f"only {len(texts)} sentences in {STS_TRAIN}")
    return texts[:count]


def single_process(encoder: Encoder, texts: list[str], threads: int) -> float:
    """Seconds for ``encode_documents(texts)`` with ``threads`` torch threads."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        encoder.encode_documents(texts)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(default_threads)


def ray_once(model: str, texts: list[str], actors: int, num_gpus: float | None) -> dict[str, float]:
    """One :func:`embed` run streamed to the driver: end-to-end and steady sentences/s."""
    dataset = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    start = time.perf_counter()
    vectors = embed(
        dataset,
        {"model": model},
        concurrency=actors,
        batch_size=BATCH_SIZE,
        num_cpus=1,
        num_gpus=num_gpus,
    )
    arrivals = [(time.perf_counter(), len(b["id"])) for b in vectors.iter_batches(batch_size=None)]
    assert sum(rows for _, rows in arrivals) == len(texts)
    first, end = arrivals[0][0], arrivals[-1][0]
    return {
        "end_to_end_seconds": round(end - start, 2),
        "first_batch_seconds": round(first - start, 2),
        "steady_sentences_per_s": round(
            sum(rows for _, rows in arrivals[1:]) / max(end - first, 1e-9), 1
        ),
    }


def plan(per_device: float, tokens_per_text: float, dim: int, device: str) -> dict[str, Any]:
    """Device-hours, actors and Qdrant size for :data:`PLAN_DOCUMENTS` documents, for documents
    as long as the benchmark's sentences and for :data:`CHUNK_TOKENS`-token chunks (scaled by
    tokens: an estimate, attention cost grows faster than linearly)."""
    ram_float32 = PLAN_DOCUMENTS * dim * 4 * QDRANT_OVERHEAD
    ram_binary = PLAN_DOCUMENTS * dim / 8 * QDRANT_OVERHEAD
    lengths = {"sentences": tokens_per_text, f"{CHUNK_TOKENS}_token_chunks": CHUNK_TOKENS}
    encoding = {}
    for name, length in lengths.items():
        rate = per_device * tokens_per_text / length
        device_hours = PLAN_DOCUMENTS / rate / 3600
        actors = math.ceil(device_hours / PLAN_TARGET_HOURS)
        encoding[name] = {
            "tokens_per_document": round(length, 1),
            "documents_per_s_per_actor": round(rate, 1),
            "device_hours": round(device_hours, 1),
            "actors_for_target": actors,
            "hours_with_those_actors": round(device_hours / actors, 1),
        }
    return {
        "documents": PLAN_DOCUMENTS,
        "per_actor_sentences_per_s": per_device,
        "device": device,
        "target_hours": PLAN_TARGET_HOURS,
        "encoding": encoding,
        "qdrant_ram_gb_float32": round(ram_float32 / 1e9, 1),
        "qdrant_ram_gb_binary_quantized": round(ram_binary / 1e9, 1),
        "qdrant_shards": math.ceil(PLAN_DOCUMENTS / SHARD_POINTS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--num-gpus", type=float, help="GPUs per actor (on a GPU machine)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster (2)")
    args = parser.parse_args()

    texts = sentences(args.sentences)
    encoder = Encoder(args.model, batch_size=32)
    encoder.encode_documents(texts[:64])  # warm-up
    tokens = sum(len(item.ids) for item in encoder.tokenize(texts))
    thread_counts = sorted({1, torch.get_num_threads()})
    load_before = os.getloadavg()
    single: dict[int, list[float]] = {threads: [] for threads in thread_counts}
    on_ray: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    ray.init(
        "local", num_cpus=args.cpus, object_store_memory=300 * 1024**2, include_dashboard=False
    )
    try:
        # Interleaved, so that each repetition sees the machine's load alike.
        for _ in range(args.repeats):
            for threads in thread_counts:
                single[threads].append(single_process(encoder, texts, threads))
            for actors in on_ray:
                on_ray[actors].append(ray_once(args.model, texts, actors, args.num_gpus))
    finally:
        ray.shutdown()
    single_rates = {t: round(len(texts) / min(s), 1) for t, s in single.items()}
    steady = {a: max(r["steady_sentences_per_s"] for r in runs) for a, runs in on_ray.items()}
    device = f"{args.num_gpus} GPU" if args.num_gpus else "1 CPU core of this machine"
    result = {
        "model": args.model,
        "sentences": len(texts),
        "tokens": tokens,
        "ray_version": ray.__version__,
        "machine": machine(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "single_process": [
            {
                "torch_threads": threads,
                "seconds": [round(v, 2) for v in single[threads]],
                "sentences_per_s": single_rates[threads],
            }
            for threads in thread_counts
        ],
        "ray": [
            {
                "actors": actors,
                "end_to_end_sentences_per_s": round(
                    len(texts) / min(r["end_to_end_seconds"] for r in runs), 1
                ),
                "steady_sentences_per_s": steady[actors],
                "runs": runs,
            }
            for actors, runs in on_ray.items()
        ],
        "ray_steady_vs_single_process_one_thread": {
            str(actors): round(rate / single_rates[1], 2) for actors, rate in steady.items()
        },
        "plan_100m_from_one_actor": plan(steady[1], tokens / len(texts), encoder.dim, device),
    }
    print(json.dumps(result, indent=2))
    write_report(args.output, result)


if __name__ == "__main__":
    main()
