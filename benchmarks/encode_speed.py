"""Sentences per second of llmvec against its peers on the same model, texts and batch size.

Each case is one :func:`llmvec.bench.run_bench` call (what ``llmvec bench --compare`` runs): a
warm-up pass over the very texts timed, then the two libraries taking turns on chunks of the
texts, so that load from other processes falls on both alike; the report holds both rates, the
ratio, the cosine between the two libraries' vectors, and llmvec's fraction of this machine's
matmul peak. Cases and the issue's targets:

- ``smollm2-ke``: SmolLM2-135M-Instruct, KE template, layer -2, last token, vs llemb 0.3.0 (4x);
- ``smollm2-ke-compiled``: the same with ``compile=True`` (compiling happens in the warm-up);
- ``smollm2-ke-uncached``: the same without the shared-prefix cache (what the cache is worth;
  no target);
- ``smollm2-mean``: SmolLM2-135M-Instruct, mean pooling, no template, vs llemb 0.3.0 (1.5x);
- ``minilm-mean``: all-MiniLM-L6-v2, mean pooling, vs sentence-transformers (1x, cosine > 0.9999).

Texts: the first 1,000 distinct STS-B test ``sentence1`` values. Run in `.venv` (its `dev` extra
installs both peers); writes benchmarks/results/encode_speed.json.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from _report import RESULTS, machine, sts_sentences, versions, write_report

#: case -> (Encoder arguments, peer, the speed ratio the issue asks for, if it asks).
CASES: dict[str, tuple[dict[str, Any], str, float | None]] = {
    "smollm2-ke": ({"model": "smollm2", "template": "ke"}, "llemb", 4.0),
    "smollm2-ke-compiled": ({"model": "smollm2", "template": "ke", "compile": True}, "llemb", 4.0),
    "smollm2-ke-uncached": (
        {"model": "smollm2", "template": "ke", "prefix_caching": False},
        "llemb",
        None,
    ),
    "smollm2-mean": ({"model": "smollm2", "pooling": "mean"}, "llemb", 1.5),
    "minilm-mean": (
        {"model": "all-minilm-l6-v2", "pooling": "mean"},
        "sentence-transformers",
        1.0,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunks", type=int, default=4, help="parts the libraries take turns on")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the texts")
    parser.add_argument("--dtype", default="float32", help="both libraries' dtype (float32)")
    parser.add_argument("--device", default="cpu", help="both libraries' device (cpu)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--output", type=Path, default=RESULTS / "encode_speed.json")
    args = parser.parse_args()

    from llmvec import Encoder
    from llmvec.bench import run_bench

    torch.set_num_threads(args.threads)
    started = machine()
    texts = sts_sentences(args.sentences)
    results: dict[str, Any] = {}
    for name in args.cases:
        arguments, peer, target = CASES[name]
        encoder = Encoder(
            **arguments, device=args.device, dtype=args.dtype, batch_size=args.batch_size
        )
        report = run_bench(encoder, texts, compare=peer, chunks=args.chunks, repeats=args.repeats)
        comparison = report["peer"]
        report["target_ratio"] = target
        if target is not None:
            report["meets_target"] = comparison["ratio"] >= target and (
                peer != "sentence-transformers" or comparison["cosine_min"] > 0.9999
            )
        results[name] = report
        ours, theirs = report["results"]["llmvec"], report["results"][peer]
        print(
            f"{name:19s} llmvec {ours['sentences_per_s']:7.1f}/s  {peer} "
            f"{theirs['sentences_per_s']:7.1f}/s  ratio {comparison['ratio']:5.2f}x "
            f"(target {target or '-'}x)  cosine min {comparison['cosine_min']:.6f}  "
            f"matmul peak {100 * ours['fraction_of_matmul_peak']:.0f}%"
        )
        del encoder
    write_report(
        args.output,
        {
            "benchmark": "encode_speed",
            "data": "STS-B test sentence1, first distinct values",
            "sentences": len(texts),
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "threads": args.threads,
            "device": args.device,
            "dtype": args.dtype,
            "versions": versions("llemb", "sentence-transformers"),
            "machine": {"start": started, "end": machine()},
            "cases": results,
        },
    )


if __name__ == "__main__":
    main()
