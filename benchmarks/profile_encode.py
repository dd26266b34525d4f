"""Where an encode pass spends its time: host (Python, dispatch, tokenization) or device kernels.

Runs one recipe (and, with ``--compare``, the peer on the same texts, as ``llmvec bench`` sets
it up) under ``torch.profiler`` after an untimed warm-up pass, and reports per library: the wall
time per ``--batch-size`` texts (each library plans its own forward passes), the time the GPU
was busy with kernels (its share of the wall time: low means the host is the bottleneck; on a
CPU there is none), and the operators with the most host time. Made for the GPU machine, where
short batches are host-bound.

    python benchmarks/profile_encode.py --template ke --device cuda --dtype bfloat16 --compare llemb

Writes benchmarks/results/profile_encode.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from _report import RESULTS, machine, sts_sentences, versions, write_report
from torch.profiler import ProfilerActivity, profile


def _device_time(event: Any) -> float:
    """An operator's own kernel time in microseconds (the attribute's name changed in torch 2.4)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_pass(encode: Any, texts: list[str], batch_size: int, cuda: bool) -> dict[str, Any]:
    """Profile one pass of ``encode(texts)`` (already warmed up)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        began = time.perf_counter()
        encode(texts)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - began
    events = profiler.key_averages()
    kernel_us = sum(_device_time(event) for event in events) if cuda else 0.0
    top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:15]
    return {
        "wall_s": round(wall, 4),
        "wall_ms_per_batch_size_texts": round(1000 * wall * batch_size / len(texts), 2),
        "gpu_kernel_s": round(kernel_us / 1e6, 4) if cuda else None,
        "gpu_busy_fraction": round(kernel_us / 1e6 / wall, 3) if cuda else None,
        "host_ops": sum(event.count for event in events),
        "top_host_ops": [
            {
                "op": event.key,
                "count": event.count,
                "self_host_ms": round(event.self_cpu_time_total / 1000, 2),
                "self_kernel_ms": round(_device_time(event) / 1000, 2),
            }
            for event in top
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--template")
    parser.add_argument("--pooling")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--texts", type=int, default=256, help="first N distinct STS-B sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compare", choices=["llemb", "sentence-transformers"])
    parser.add_argument("--output", type=Path, default=RESULTS / "profile_encode.json")
    args = parser.parse_args()

    from llmvec import Encoder
    from llmvec.bench import PEERS

    texts = sts_sentences(args.texts)
    encoder = Encoder(
        args.model,
        template=args.template,
        pooling=args.pooling,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
    )
    libraries: dict[str, Any] = {
        "llmvec": lambda part: encoder.encode(part, show_progress=False),
    }
    if args.compare:
        libraries[args.compare] = PEERS[args.compare](encoder, args.batch_size).encode
    cuda = torch.device(args.device).type == "cuda"
    results: dict[str, Any] = {}
    for name, encode in libraries.items():
        encode(texts)  # warm-up: kernel selection, caches, the shared prefix
        results[name] = profile_pass(encode, texts, args.batch_size, cuda)
        summary = results[name]
        busy = summary["gpu_busy_fraction"]
        print(
            f"{name:22s} {summary['wall_ms_per_batch_size_texts']:8.2f} ms"
            + f" per {args.batch_size} texts"
            + (f"  GPU busy {100 * busy:5.1f}%" if busy is not None else "")
            + f"  {summary['host_ops']} host ops"
        )
    write_report(
        args.output,
        {
            "benchmark": "profile_encode",
            "model": args.model,
            "recipe": {"template": args.template, "pooling": args.pooling},
            "device": args.device,
            "dtype": args.dtype,
            "texts": len(texts),
            "batch_size": args.batch_size,
            "versions": versions("llemb", "sentence-transformers"),
            "machine": machine(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
