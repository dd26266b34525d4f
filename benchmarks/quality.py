"""Quality table: STS-B Spearman and SciFact nDCG@10 for SmolLM2-135M recipes and MiniLM.

Settings are chosen on STS-B **dev** only; test figures are reported as they come out.

Steps (``--steps``, default ``sts scifact-fast``):

- ``sts``: STS-B dev and test for every SmolLM2 recipe (mean, last_token, prompteol,
  pcoteol, ke), all-MiniLM-L6-v2 and the WordLlama static model; the SmolLM2 recipe with the
  best dev Spearman is recorded as ``selected``.
- ``scifact-fast``: SciFact nDCG@10 / recall@10 for all-MiniLM-L6-v2 (max_length 256) and
  WordLlama (static backend).
- ``sts-bfloat16``: STS-B dev for every SmolLM2 recipe with ``dtype="bfloat16"`` (this CPU
  has AMX / AVX-512 BF16), next to the float32 figure, with the bfloat16 rate.
- ``scifact-smollm2``: SciFact for every SmolLM2 recipe, with plain and instruction-prefixed
  queries (one corpus encoding serves both). About 1.3M tokens per recipe: slow on CPU.
- ``gemma``: Gemma 3 270M (``gemma3-270m``, the second real LLM) with KE, SmolLM2's best
  training-free recipe: STS-B dev and test (float32), and SciFact in bfloat16 with documents cut
  at 256 tokens (as benchmarks/training.py scores SmolLM2).

Each step merges its figures into benchmarks/results/quality.json, which also lists what was
not run and why. Data is read from ../shared/data (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from _report import DATA, RESULTS, machine, write_report

from llmvec import Encoder
from llmvec.evaluation import encode_corpus, evaluate_encoded_corpus, evaluate_sts, load_beir

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"
STS_TEST = DATA / "stsbenchmark" / "sts-test.csv"
SCIFACT = DATA / "scifact"
OUTPUT = RESULTS / "quality.json"

#: SmolLM2 recipes (Encoder arguments); templates imply last_token, pcoteol/ke layer -2.
SMOLLM2_SETTINGS: dict[str, dict[str, Any]] = {
    "mean": {"pooling": "mean"},
    "last_token": {"pooling": "last_token"},
    "prompteol": {"template": "prompteol"},
    "pcoteol": {"template": "pcoteol"},
    "ke": {"template": "ke"},
}
MINILM_SETTING: dict[str, Any] = {"pooling": "mean", "max_length": 256}
#: Models fast enough on CPU for every data set: (model, setting name, Encoder arguments).
FAST_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("all-minilm-l6-v2", "mean", MINILM_SETTING),
    ("wordllama", "static", {"backend": "static"}),
]
#: The SciFact task description e5-mistral uses (MTEB), in the e5 instruction format.
SCIFACT_INSTRUCTION = (
    "Given a scientific claim, retrieve documents that support or refute the claim"
)
PUBLISHED = {
    "all-minilm-l6-v2": {
        "sts_b_test_spearman": 82.03,
        "scifact_ndcg@10": 64.51,
        "source": "MTEB results",
    }
}
#: Gemma 3 270M recipes (Encoder arguments).
GEMMA_SETTINGS: dict[str, dict[str, Any]] = {"ke": {"template": "ke"}}
STEPS = ("sts", "sts-bfloat16", "scifact-fast", "scifact-smollm2", "gemma")


def load_report() -> dict[str, Any]:
    if OUTPUT.is_file():
        report: dict[str, Any] = json.loads(OUTPUT.read_text())
        return report
    return {"benchmark": "quality", "rows": {}}


def row(report: dict[str, Any], model: str, setting: str) -> dict[str, Any]:
    key = f"{model}/{setting}"
    entry: dict[str, Any] = report["rows"].setdefault(key, {"model": model, "setting": setting})
    return entry


def run_sts(report: dict[str, Any], threads: int, redo: bool) -> None:
    """STS-B dev + test for MiniLM and every SmolLM2 recipe; select the best recipe on dev.

    Rows that already have both figures are kept unless ``redo``; the JSON is written after
    every figure, so an interrupted run keeps what it measured.
    """
    configurations = list(FAST_MODELS)
    configurations += [("smollm2", name, args) for name, args in SMOLLM2_SETTINGS.items()]
    sts_rows(report, configurations, threads, redo)
    dev = {
        name: report["rows"][f"smollm2/{name}"]["sts_b_dev_spearman"] for name in SMOLLM2_SETTINGS
    }
    best = max(dev, key=lambda name: dev[name])
    report["selected"] = {
        "model": "smollm2",
        "setting": best,
        "chosen_on": "STS-B dev Spearman",
        "dev_spearman": dev,
    }
    print(f"selected on STS-B dev: smollm2/{best}")
    save(report, threads)


def sts_rows(
    report: dict[str, Any],
    configurations: list[tuple[str, str, dict[str, Any]]],
    threads: int,
    redo: bool,
) -> None:
    """STS-B dev and test of each (model, setting, Encoder arguments)."""
    for model, setting, arguments in configurations:
        entry = row(report, model, setting)
        splits = [
            (split, path)
            for split, path in (("dev", STS_DEV), ("test", STS_TEST))
            if redo or f"sts_b_{split}_spearman" not in entry
        ]
        if not splits:
            continue
        encoder = Encoder(model, **arguments)
        for split, path in splits:
            start = time.perf_counter()
            result = evaluate_sts(encoder, path)
            entry[f"sts_b_{split}_spearman"] = round(result["spearman"], 2)
            entry[f"sts_b_{split}_seconds"] = round(time.perf_counter() - start, 1)
            entry["spec"] = result["spec"]
            print(f"{model:17s} {setting:10s} STS-B {split:4s} {result['spearman']:6.2f}")
            save(report, threads)
        del encoder


def run_sts_bfloat16(report: dict[str, Any], threads: int, redo: bool) -> None:
    """STS-B dev for every SmolLM2 recipe in bfloat16, beside its float32 figure."""
    for name, arguments in SMOLLM2_SETTINGS.items():
        entry = row(report, "smollm2", name)
        if not redo and "sts_b_dev_spearman_bfloat16" in entry:
            continue
        encoder = Encoder("smollm2", dtype="bfloat16", **arguments)
        start = time.perf_counter()
        result = evaluate_sts(encoder, STS_DEV)
        entry["sts_b_dev_spearman_bfloat16"] = round(result["spearman"], 2)
        entry["sts_b_dev_seconds_bfloat16"] = round(time.perf_counter() - start, 1)
        print(
            f"smollm2 {name:10s} STS-B dev bfloat16 {result['spearman']:6.2f} "
            f"(float32 {entry.get('sts_b_dev_spearman', float('nan')):6.2f})"
        )
        save(report, threads)
        del encoder


def run_scifact(
    report: dict[str, Any],
    model: str,
    setting: str,
    arguments: dict[str, Any],
    instructed: bool,
    threads: int,
    redo: bool,
    dtype: str = "float32",
) -> None:
    """SciFact nDCG@10 / recall@10; with ``instructed`` also with the e5 query instruction.
    Figures in another dtype than float32 carry its name as a suffix. A row that already has
    its figures is kept unless ``redo``."""
    entry = row(report, model, setting)
    tag = "" if dtype == "float32" else f"_{dtype}"
    variants = [("", None)] + ([("_instructed", SCIFACT_INSTRUCTION)] if instructed else [])
    wanted = [f"scifact{suffix}_ndcg@10{tag}" for suffix, _ in variants]
    if not redo and all(key in entry for key in wanted):
        return
    encoder = Encoder(model, dtype=dtype, **arguments)
    data = load_beir(SCIFACT)
    start = time.perf_counter()
    documents = encode_corpus(encoder, data)
    entry[f"scifact_corpus_seconds{tag}"] = round(time.perf_counter() - start, 1)
    for suffix, instruction in variants:
        result = evaluate_encoded_corpus(encoder, data, documents, query_instruction=instruction)
        entry[f"scifact{suffix}_ndcg@10{tag}"] = round(result["ndcg@10"], 2)
        entry[f"scifact{suffix}_recall@10{tag}"] = round(result["recall@10"], 2)
        entry[f"scifact{suffix}_spec"] = result["spec"]
        print(f"{model:17s} {setting:10s} SciFact{suffix} {dtype} nDCG@10 {result['ndcg@10']:6.2f}")
        save(report, threads)


def not_run(report: dict[str, Any]) -> list[dict[str, str]]:
    """What the table lacks, and why."""
    missing = []
    for model, setting, _ in FAST_MODELS:
        entry = report["rows"].get(f"{model}/{setting}", {})
        for key, step in (("sts_b_test_spearman", "sts"), ("scifact_ndcg@10", "scifact-fast")):
            if key not in entry:
                missing.append({"what": f"{model}/{setting} {key}", "why": f"{step} not run"})
    for name in SMOLLM2_SETTINGS:
        entry = report["rows"].get(f"smollm2/{name}", {})
        if "sts_b_test_spearman" not in entry:
            missing.append({"what": f"smollm2/{name} STS-B", "why": "the sts step was not run"})
        if "scifact_ndcg@10" not in entry and "scifact_ndcg@10_bfloat16" not in entry:
            why = (
                "the scifact-smollm2 step was not run for this recipe (~1.3M tokens, minutes "
                f"on a quiet 2-core CPU): python benchmarks/quality.py --steps scifact-smollm2 "
                f"--smollm2-settings {name}"
            )
            what = f"smollm2/{name} SciFact (plain and instruction-prefixed queries)"
            missing.append({"what": what, "why": why})
    return missing


def save(report: dict[str, Any], threads: int) -> None:
    """Write the report with its context (published figures, machine, what was not run)."""
    report.update(
        published=PUBLISHED,
        scifact_instruction=SCIFACT_INSTRUCTION,
        machine=machine(),
        threads=threads,
        not_run=not_run(report),
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    write_report(OUTPUT, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        nargs="*",
        choices=STEPS,
        default=["sts", "sts-bfloat16", "scifact-fast"],
        help="what to run (none: only rewrite the report's context)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--redo", action="store_true", help="re-measure figures already there")
    parser.add_argument(
        "--smollm2-settings",
        nargs="+",
        choices=list(SMOLLM2_SETTINGS),
        default=list(SMOLLM2_SETTINGS),
        help="SmolLM2 recipes the scifact-smollm2 step runs (all)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="dtype of the scifact-smollm2 step (float32); bfloat16 figures are kept apart",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = load_report()
    if "sts" in args.steps:
        run_sts(report, args.threads, args.redo)
    if "scifact-fast" in args.steps:
        for model, setting, arguments in FAST_MODELS:
            run_scifact(report, model, setting, arguments, False, args.threads, args.redo)
    if "sts-bfloat16" in args.steps:
        run_sts_bfloat16(report, args.threads, args.redo)
    if "scifact-smollm2" in args.steps:
        for name in args.smollm2_settings:
            arguments = SMOLLM2_SETTINGS[name]
            run_scifact(
                report, "smollm2", name, arguments, True, args.threads, args.redo, args.dtype
            )
    if "gemma" in args.steps:
        gemma = [("gemma3-270m", name, arguments) for name, arguments in GEMMA_SETTINGS.items()]
        sts_rows(report, gemma, args.threads, args.redo)
        ke = {**GEMMA_SETTINGS["ke"], "max_length": 256}
        run_scifact(report, "gemma3-270m", "ke", ke, True, args.threads, args.redo, "bfloat16")
    save(report, args.threads)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
