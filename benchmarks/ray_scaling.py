"""Sentences per second on Ray Data with 1 and 2 encoder actors, against the single-process
Encoder, on the same sentences, in the same run; then a plan for a 100-million-document corpus.

Each Ray run is timed twice: end to end (``embed``'s column check and encoder probe, actor
start-up and model loading included) and on a one-batch dataset, whose time is the fixed
start-up cost; ``steady_sentences_per_s`` divides the sentences by the difference. Ray actors
get ``num_cpus=1`` each, so Ray pins each one to one thread (``OMP_NUM_THREADS=1``); the single
process uses torch's default threads. The machine may be shared: its load average is recorded.

Writes benchmarks/results/ray_scaling.json. Run in the main environment with the ray extra.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import ray
import torch

from llmvec import Encoder
from llmvec.evaluation import load_sts
from llmvec.ray import embed

ROOT = Path(__file__).resolve().parents[1]
STS_TRAIN = ROOT.parent / "shared" / "data" / "stsbenchmark" / "sts-train.csv"
OUTPUT = ROOT / "benchmarks" / "results" / "ray_scaling.json"
BATCH_SIZE = 256
#: The corpus of the plan, and the wall-clock it should take.
PLAN_DOCUMENTS = 100_000_000
PLAN_TARGET_HOURS = 24.0
#: Qdrant's RAM rule of thumb (capacity-planning docs): points * dim * 4 bytes * 1.5.
QDRANT_OVERHEAD = 1.5
#: A shard size that keeps moves and snapshots quick; Qdrant leaves the choice to the user.
SHARD_POINTS = 10_000_000


def sentences(count: int) -> list[str]:
    """``count`` STS-B training sentences (both sides of each pair, in file order)."""
    pairs = load_sts(STS_TRAIN)
    texts = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    if count > len(texts):
        raise SystemExit(f"only {len(texts)} sentences in {STS_TRAIN}")
    return texts[:count]


def single_process(model: str, texts: list[str]) -> dict[str, Any]:
    encoder = Encoder(model, batch_size=32)
    encoder.encode_documents(texts[:64])  # warm-up
    start = time.perf_counter()
    encoder.encode_documents(texts)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(texts) / seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "dim": encoder.dim,
    }


def ray_run(model: str, texts: list[str], actors: int, num_gpus: float | None) -> dict[str, Any]:
    def timed(rows: list[str]) -> float:
        dataset = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(rows)])
        start = time.perf_counter()
        vectors = embed(
            dataset,
            {"model": model},
            concurrency=actors,
            batch_size=BATCH_SIZE,
            num_cpus=1,
            num_gpus=num_gpus,
        )
        count = vectors.count()
        assert count == len(rows)
        return time.perf_counter() - start

    startup = timed(texts[:BATCH_SIZE])
    total = timed(texts)
    steady = max(total - startup, 1e-9)
    return {
        "actors": actors,
        "end_to_end_seconds": round(total, 2),
        "end_to_end_sentences_per_s": round(len(texts) / total, 1),
        "startup_seconds": round(startup, 2),
        "steady_sentences_per_s": round((len(texts) - BATCH_SIZE) / steady, 1),
    }


def plan(per_device: float, dim: int, device: str) -> dict[str, Any]:
    """Actors, device-hours and Qdrant shards for :data:`PLAN_DOCUMENTS` documents."""
    device_hours = PLAN_DOCUMENTS / per_device / 3600
    actors = math.ceil(device_hours / PLAN_TARGET_HOURS)
    ram_bytes = PLAN_DOCUMENTS * dim * 4 * QDRANT_OVERHEAD
    return {
        "documents": PLAN_DOCUMENTS,
        "per_device_sentences_per_s": per_device,
        "device": device,
        "device_hours": round(device_hours, 1),
        "target_hours": PLAN_TARGET_HOURS,
        "actors_for_target": actors,
        "hours_with_those_actors": round(device_hours / actors, 1),
        "qdrant_ram_gb_float32": round(ram_bytes / 1e9, 1),
        "qdrant_ram_gb_binary_quantized": round(PLAN_DOCUMENTS * dim / 8 * 1.5 / 1e9, 1),
        "qdrant_shards": math.ceil(PLAN_DOCUMENTS / SHARD_POINTS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--num-gpus", type=float, help="GPUs per actor (on a GPU machine)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster (2)")
    args = parser.parse_args()

    texts = sentences(args.sentences)
    load_before = os.getloadavg()
    single = single_process(args.model, texts)
    ray.init(num_cpus=args.cpus, object_store_memory=300 * 1024**2, include_dashboard=False)
    try:
        runs = [ray_run(args.model, texts, actors, args.num_gpus) for actors in (1, 2)]
    finally:
        ray.shutdown()
    per_actor = runs[0]["steady_sentences_per_s"]
    device = f"{args.num_gpus} GPU" if args.num_gpus else "1 CPU core of this machine"
    result = {
        "model": args.model,
        "sentences": len(texts),
        "ray_version": ray.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "single_process": single,
        "ray": runs,
        "ray_overhead_vs_single_process": {
            str(run["actors"]): round(single["sentences_per_s"] / run["steady_sentences_per_s"], 2)
            for run in runs
        },
        "plan_100m_from_one_actor": plan(per_actor, single["dim"], device),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
