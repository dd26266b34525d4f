"""Quality of llmvec's training recipes, each under a CPU time budget, before and after.

Recipes (``--recipes``):

- ``smollm2-ke-simcse``: PromptEOL+CSE with the KE template: SmolLM2-135M-Instruct, last token
  of layer -2 (KE's default), unsupervised SimCSE (LoRA r=16) on the CC-BY/PD sentences;
- ``smollm2-llm2vec``: LLM2Vec: bidirectional MNTP, then SimCSE on top, mean pooling;
- ``smollm2-supervised``: supervised InfoNCE on SNLI triplets (no instruction), WikiQA train
  and SciFact train pairs (each with its task's instruction; SciFact's hard negatives mined by
  all-MiniLM-L6-v2), KE template and last token as in PromptEOL+CSE, Matryoshka 128 and the
  binary-aware term; SciFact's dev queries (``_report.scifact_dev_query_ids``, where
  benchmarks/hybrid.py chooses its weights) are held out;
- ``smollm2-supervised-cosent``: CoSENT on every STS-B train pair with its score, on top of the
  kept ``smollm2-supervised`` folder (``--keep``; the two budgets add up);
- ``minilm-scifact``: all-MiniLM-L6-v2, every weight trained, on the SciFact train pairs with
  hard negatives mined by ``llmvec mine`` from an index of the SciFact corpus.

Settings are chosen on STS-B dev and the dev splits (never on test); STS-B test and SciFact test
are reported as they come out. Figures: STS-B Spearman x100, SciFact nDCG@10 x100 (float32,
Matryoshka 128 and binary with rescoring for the supervised recipe). Writes
benchmarks/results/training.json (one entry per recipe, merged into what is there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _report import (
    DATA,
    RESULTS,
    machine,
    scifact_dev_query_ids,
    sts_train_scored,
    sts_train_triplets,
    versions,
    write_report,
)

from llmvec import Encoder
from llmvec.evaluation import evaluate_retrieval, evaluate_sts

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"
STS_TEST = DATA / "stsbenchmark" / "sts-test.csv"
SCIFACT = DATA / "scifact"
TRAIN = DATA / "train"
SCIFACT_INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute it"
WIKIQA_INSTRUCTION = "Given a question, retrieve Wikipedia passages that answer the question"
#: STS-B train pairs at least this close (of 5) are positives for the supervised recipe.
STS_MIN_SCORE = 4.0


def sts(encoder: Encoder) -> dict[str, float]:
    return {
        "sts_dev": round(float(evaluate_sts(encoder, STS_DEV)["spearman"]), 2),
        "sts_test": round(float(evaluate_sts(encoder, STS_TEST)["spearman"]), 2),
    }


def scifact(encoder: Encoder, instruction: str | None, **options: Any) -> float:
    result = evaluate_retrieval(encoder, SCIFACT, query_instruction=instruction, **options)
    return round(float(result["ndcg@10"]), 2)


def scifact_variants(encoder: Encoder, instruction: str | None) -> dict[str, float]:
    """SciFact nDCG@10 in float32, Matryoshka 128-d and binary with rescoring (one encoding of
    the corpus)."""
    from llmvec.evaluation import encode_corpus, evaluate_encoded_corpus, load_beir

    data = load_beir(SCIFACT, "test")
    documents = encode_corpus(encoder, data)
    variants = {"scifact": {}, "scifact_matryoshka_128": {"truncate_dim": 128},
                "scifact_binary_rescored": {"precision": "binary"}}  # fmt: skip
    return {
        name: round(
            float(
                evaluate_encoded_corpus(
                    encoder, data, documents, query_instruction=instruction, **options
                )["ndcg@10"]
            ),
            2,
        )
        for name, options in variants.items()
    }


def steps_in(budget: float, seconds_per_step: float) -> int:
    """The steps a budget holds at a measured step time: the learning-rate schedule (warm-up,
    then linear decay) spans the run the budget allows, not an epoch it never reaches."""
    return max(10, int(budget / seconds_per_step))


def sts_dev_slice(scratch: Path, pairs: int = 500) -> Path:
    """The first ``pairs`` STS-B dev rows: the score a run keeps its best checkpoint by (the
    whole dev and test sets are scored once at the end)."""
    path = scratch / "sts-dev-slice.csv"
    lines = STS_DEV.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:pairs]), encoding="utf-8")
    return path


def scifact_pairs(scratch: Path, hold_out_dev: bool = False) -> list[tuple[str, str]]:
    """SciFact train claims with their cited abstracts as (query, positive) pairs, without the
    dev queries when ``hold_out_dev``."""
    held_out = set(scifact_dev_query_ids()) if hold_out_dev else set()
    pairs = []
    with (TRAIN / "scifact_train_pairs.jsonl").open(encoding="utf-8") as source:
        for line in source:
            row = json.loads(line)
            if row["query_id"] not in held_out:
                pairs.append((row["query"], f"{row['title']} {row['text']}".strip()))
    return pairs


def mined_scifact(
    scratch: Path, miner: Encoder, pairs: list[tuple[str, str]], instruction: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """SciFact ``pairs`` with hard negatives mined by ``llmvec mine``'s function from an index
    of the SciFact corpus built with ``miner``, as a triplet file (rows with ``instruction``)."""
    from llmvec.evaluation import load_beir
    from llmvec.index.faiss import FaissIndex
    from llmvec.training.mining import MiningOptions, mine_hard_negatives, write_triplets

    corpus = load_beir(SCIFACT, "test").corpus
    index = FaissIndex(miner)
    index.add(list(corpus.values()), ids=list(corpus))
    options = MiningOptions(top_k=30, min_rank=5, margin=0.05)
    instructions = {query: instruction for query, _ in pairs} if instruction else None
    rows, report = mine_hard_negatives(index, pairs, options, instructions=instructions)
    path = scratch / "scifact_mined.jsonl"
    write_triplets(rows, path)
    return path, report.__dict__


def wikiqa_triplets(instruction: str) -> list[dict[str, str]]:
    """WikiQA train questions with a negative (rows without one are left out), each with
    ``instruction``."""
    from llmvec.training.data import load_triplets

    rows = load_triplets(TRAIN / "wikiqa_train.jsonl")
    return [{**row, "instruction": instruction} for row in rows if row["negative"]]


def sample(rows: list[dict[str, str]], count: int, seed: int = 0) -> list[dict[str, str]]:
    """``count`` of ``rows`` drawn without replacement (all of them when there are fewer)."""
    return random.Random(seed).sample(rows, min(count, len(rows)))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """``rows`` as a JSONL triplet file."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run_ke_simcse(budget: float, scratch: Path, output: Path) -> dict[str, Any]:
    from llmvec.training.stages import train_simcse

    recipe = {"template": "ke"}
    before = {"sts_dev": 76.26, "sts_test": 68.74, "note": "issue 19's figures, not re-run"}
    folder = train_simcse(
        "smollm2",
        str(TRAIN / "sentences_ccby_pd.txt.gz"),
        str(output),
        batch_size=32,
        learning_rate=2e-4,
        max_length=64,
        max_steps=steps_in(budget, seconds_per_step=3.5),
        time_budget_s=budget,
        eval_sts=str(sts_dev_slice(scratch)),
        eval_steps=40,
        save_steps=40,
        show_progress=False,
        **recipe,
    )
    trained = Encoder(str(folder))
    return {"before": before, "after": sts(trained),
            **_run_facts(folder)}  # fmt: skip


def run_llm2vec(budget: float, scratch: Path, output: Path) -> dict[str, Any]:
    from llmvec.training.stages import train_mntp, train_simcse

    before = {"sts_test": 37.15, "note": "issue 19's mean-pooling figure, not re-run"}
    sentences = str(TRAIN / "sentences_ccby_pd.txt.gz")
    mntp = train_mntp(
        "smollm2", sentences, str(scratch / "mntp"), batch_size=32, max_length=64,
        learning_rate=5e-5, time_budget_s=budget / 2, max_steps=steps_in(budget / 2, 6.0),
        save_steps=100, show_progress=False,
    )  # fmt: skip
    after_mntp = float(evaluate_sts(Encoder(str(mntp)), sts_dev_slice(scratch))["spearman"])
    folder = train_simcse(
        str(mntp), sentences, str(output), batch_size=32, max_length=64,
        pooling="mean", learning_rate=2e-4, time_budget_s=budget / 2,
        max_steps=steps_in(budget / 2, 10.0), eval_sts=str(sts_dev_slice(scratch)),
        eval_steps=10, save_steps=10, show_progress=False,
    )  # fmt: skip
    trained = Encoder(str(folder))
    return {"before": before, "after_mntp_dev_slice": round(after_mntp, 2),
            "after": sts(trained), **_run_facts(folder)}  # fmt: skip


def run_supervised(budget: float, scratch: Path, output: Path) -> dict[str, Any]:
    from llmvec.training.data import load_triplets
    from llmvec.training.stages import train_contrastive

    # One mixed phase, every row with a hard negative; queries carry their task's instruction
    # (STS sentences none: they are encoded as documents). The budget holds about one pass over
    # this mix: SNLI and WikiQA are sampled so SciFact's pairs are a fifth of it.

    miner = Encoder("all-minilm-l6-v2", pooling="mean", max_length=256)
    scifact_rows, mined = mined_scifact(
        scratch, miner, scifact_pairs(scratch, hold_out_dev=True), SCIFACT_INSTRUCTION
    )
    mix = {
        "snli": sample(list(load_triplets(TRAIN / "snli_devtest_triplets.csv")), 1200),
        "sts_b_train": sample(sts_train_triplets(STS_MIN_SCORE), 800),
        "wikiqa": sample(wikiqa_triplets(WIKIQA_INSTRUCTION), 500),
    }
    data = [str(write_rows(scratch / f"{name}.jsonl", rows)) for name, rows in mix.items()]
    data.append(str(scifact_rows))
    folder = train_contrastive(
        "smollm2", data, str(output), template="ke", max_length=128,
        batch_size=16, learning_rate=1e-4, matryoshka_dims=(128, 576), binary=True, epochs=2.0,
        max_steps=steps_in(budget, seconds_per_step=6.0), time_budget_s=budget,
        eval_sts=str(sts_dev_slice(scratch)), eval_steps=100, save_steps=100,
        show_progress=False,
    )  # fmt: skip
    # bfloat16, documents cut at 256 tokens: float32 at 512 takes over an hour on SciFact here.
    trained = Encoder(str(folder), dtype="bfloat16", max_length=256)
    return {
        "before": {"sts_dev": 76.26, "sts_test": 68.74, "scifact": 21.5,
                   "note": "issue 19's training-free KE figures, not re-run"},
        "mined": mined,
        "rows": {**{name: len(r) for name, r in mix.items()}, "scifact": mined["rows_written"]},
        "after": {**sts(trained), **scifact_variants(trained, SCIFACT_INSTRUCTION)},
        **_run_facts(folder),
    }  # fmt: skip


def run_supervised_cosent(budget: float, scratch: Path, output: Path) -> dict[str, Any]:
    """CoSENT on every STS-B train pair, on top of the kept ``smollm2-supervised`` folder."""
    from llmvec.training.stages import train_cosent

    base = output.parent / "smollm2-supervised"
    if not (base / "training_config.json").is_file():
        raise SystemExit(f"{base} holds no trained folder: run smollm2-supervised with --keep")
    folder = train_cosent(
        str(base), str(sts_train_scored(scratch / "sts-train.jsonl")), str(output),
        batch_size=32, learning_rate=5e-5, max_length=128, matryoshka_dims=(128, 576),
        binary=True, max_steps=steps_in(budget, seconds_per_step=6.0), time_budget_s=budget,
        save_steps=50, show_progress=False,
    )  # fmt: skip
    trained = Encoder(str(folder), dtype="bfloat16", max_length=256)
    return {
        "base": str(base),
        "after": {**sts(trained), **scifact_variants(trained, SCIFACT_INSTRUCTION)},
        **_run_facts(folder),
    }


def run_minilm(budget: float, scratch: Path, output: Path) -> dict[str, Any]:
    from llmvec.training.stages import train_contrastive

    # 256 tokens, as the model was trained and published (64.51).
    base = Encoder("all-minilm-l6-v2", pooling="mean", max_length=256)
    before = scifact(base, None)
    mined, report = mined_scifact(scratch, base, scifact_pairs(scratch))
    folder = train_contrastive(
        "all-minilm-l6-v2", str(mined), str(output), pooling="mean", lora_rank=0,
        batch_size=32, learning_rate=2e-5, max_length=256, time_budget_s=budget, epochs=3.0,
        save_steps=50, show_progress=False,
    )  # fmt: skip
    trained = Encoder(str(folder), max_length=256)
    return {"before": {"scifact": before}, "mined": report,
            "after": {"scifact": scifact(trained, None), **sts(trained)},
            **_run_facts(folder)}  # fmt: skip


def _run_facts(folder: Path) -> dict[str, Any]:
    log = json.loads((folder / "training_log.json").read_text())["log_history"]
    config = json.loads((folder / "training_config.json").read_text())
    final = next((e for e in reversed(log) if "train_runtime" in e), {})
    dev = [e for e in log if "eval_score" in e]
    return {
        "steps": final.get("step"),
        "train_seconds": final.get("train_runtime"),
        "batch_size": config["batch_size"],
        "dev_scores": [(e["step"], round(e["eval_score"], 2)) for e in dev],
    }


RECIPES = {
    "smollm2-ke-simcse": run_ke_simcse,
    "smollm2-llm2vec": run_llm2vec,
    "smollm2-supervised": run_supervised,
    "smollm2-supervised-cosent": run_supervised_cosent,
    "minilm-scifact": run_minilm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--budget-min", type=float, default=60.0, help="training minutes each")
    parser.add_argument("--output", type=Path, default=RESULTS / "training.json")
    parser.add_argument(
        "--keep", type=Path, help="keep the trained folders in KEEP/<recipe> (default: deleted)"
    )
    args = parser.parse_args()
    report = json.loads(args.output.read_text()) if args.output.is_file() else {"recipes": {}}
    for name in args.recipes:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:
            trained = (args.keep or Path(scratch)) / name
            result = RECIPES[name](args.budget_min * 60, Path(scratch), trained)
        result["wall_seconds"] = round(time.monotonic() - started)
        result["budget_min"] = args.budget_min
        report["recipes"][name] = result
        report.update(machine=machine(), versions=versions("peft", "accelerate", "datasets"))
        print(name, json.dumps(result), flush=True)
        write_report(args.output, report)


if __name__ == "__main__":
    main()
