"""int8 on the CPU (``quantization="int8"``) against float32: STS-B dev Spearman and sentences/s.

For all-MiniLM-L6-v2 (mean pooling) and SmolLM2-135M-Instruct with KE, the STS-B dev sentences
are encoded in float32 and in int8 by the same recipe, in the same process, alternating: the
report gives each one's Spearman (x100), the cosine of its vectors to the float32 ones, and
sentences/s of a first (cold shapes) and of a second (warm) pass, with their ratio.

Writes benchmarks/results/int8_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from _report import DATA, RESULTS, machine, source_revision, write_report
from scipy.stats import spearmanr

from llmvec import Encoder
from llmvec.evaluation import load_sts
from llmvec.testing import row_cosines

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"
MODELS: dict[str, dict[str, Any]] = {
    "minilm-mean": {"model": "all-minilm-l6-v2", "pooling": "mean"},
    "smollm2-ke": {"model": "smollm2", "template": "ke"},
}


def _timed(encoder: Encoder, sentences: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    vectors = encoder.encode(sentences, batch_size=batch_size)
    return vectors, len(sentences) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1500, help="first N STS-B dev pairs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--output", type=Path, default=RESULTS / "int8_cpu.json")
    args = parser.parse_args()
    pairs = load_sts(STS_DEV)[: args.pairs]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    row = {sentence: i for i, sentence in enumerate(sentences)}
    gold = np.array([p.score for p in pairs])
    left = [row[p.sentence1] for p in pairs]
    right = [row[p.sentence2] for p in pairs]
    results: dict[str, Any] = {}
    for name in args.models:
        encoders = {
            "float32": Encoder(**MODELS[name]),
            "int8": Encoder(**MODELS[name], quantization="int8"),
        }
        runs: dict[str, dict[str, Any]] = {p: {} for p in encoders}
        vectors: dict[str, np.ndarray] = {}
        for pass_name in ("cold", "warm"):  # float32 then int8 each pass: same conditions
            for precision, encoder in encoders.items():
                vectors[precision], rate = _timed(encoder, sentences, args.batch_size)
                runs[precision][f"{pass_name}_sentences_per_s"] = round(rate, 1)
        for precision, found in vectors.items():
            scores = row_cosines(found[left], found[right])
            runs[precision]["spearman"] = round(100 * float(spearmanr(scores, gold)[0]), 2)
            runs[precision]["cosine_to_float32"] = round(
                float(row_cosines(found, vectors["float32"]).mean()), 4
            )
        results[name] = {
            "recipe": MODELS[name],
            "float32": runs["float32"],
            "int8": runs["int8"],
            "spearman_delta": round(runs["int8"]["spearman"] - runs["float32"]["spearman"], 2),
            "warm_speedup": round(
                runs["int8"]["warm_sentences_per_s"] / runs["float32"]["warm_sentences_per_s"], 2
            ),
            "cold_speedup": round(
                runs["int8"]["cold_sentences_per_s"] / runs["float32"]["cold_sentences_per_s"], 2
            ),
        }
        print(name, results[name])
    write_report(
        args.output,
        {
            "benchmark": "int8_cpu",
            "machine": machine(),
            "torch_threads": torch.get_num_threads(),
            "source_revision": source_revision(),
            "sentences": len(sentences),
            "pairs": len(pairs),
            "batch_size": args.batch_size,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
