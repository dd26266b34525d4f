"""Static models trained here: all-MiniLM-L6-v2 distilled to 256-d (``llmvec.static.distill``),
then trained by ``llmvec.static.train_static`` with the contrastive loss on training triplets
(SNLI, STS-B train pairs scored 4 or more, SciFact train claims with their abstracts, WikiQA
questions with an answer and a same-page non-answer), CoSENT on every STS-B train pair with its
score, and a distillation to all-MiniLM-L6-v2 on training sentences, Matryoshka prefixes (64,
128, 256) and the binary term; against WordLlama 256-d and the untrained distilled model, same
run.

Settings are chosen on STS-B dev (each ``--configs`` entry is trained and scored there); the
best one is then scored once on STS-B test and SciFact test at 256 and 64 dimensions and binary.

Writes benchmarks/results/static_training.json (the trained folder stays in ``--work``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _report import (
    DATA,
    RESULTS,
    STS_TEST,
    machine,
    sts_train_scored,
    sts_train_triplets,
    versions,
    write_report,
)

from llmvec import Encoder
from llmvec.evaluation import evaluate_retrieval, evaluate_sts
from llmvec.static import distill, train_static

STS_DEV = DATA / "stsbenchmark" / "sts-dev.csv"
SCIFACT = DATA / "scifact"
SNLI = DATA / "train" / "snli_devtest_triplets.csv"
SCIFACT_TRAIN = DATA / "train" / "scifact_train_pairs.jsonl"
WIKIQA = DATA / "train" / "wikiqa_train.jsonl"
SENTENCES = (
    DATA / "train" / "sentences_ccby_pd.txt.gz",
    DATA / "train" / "sentences_wikipedia_gensim.txt.gz",
)
#: A ``scored_pairs`` value that stands for every STS-B train pair with its score (CoSENT).
STS_SCORED = "STS-B train"
#: The settings tried on STS-B dev (options of train_static beyond the shared ones).
CONFIGS: dict[str, dict[str, Any]] = {
    "contrastive": {"distill_weight": 0.0},
    "contrastive+table": {"distill_weight": 0.0, "train_table": True},
    "contrastive-lr3e-3": {"distill_weight": 0.0, "learning_rate": 3e-3},
    "contrastive-6-epochs": {"distill_weight": 0.0, "epochs": 6.0},
    # Not distilled here: WordLlama's own table, trained on the same triplets (run it alone,
    # with its own --output).
    "wordllama+contrastive": {"model": "wordllama", "distill_weight": 0.0},
    "contrastive+similarity": {"distill_weight": 30.0},
    "contrastive+similarity+table": {"distill_weight": 30.0, "train_table": True},
    "contrastive+vectors+table": {"distill_loss": "vectors", "train_table": True},
    "contrastive+vectors5+table": {
        "distill_loss": "vectors",
        "distill_weight": 5.0,
        "train_table": True,
    },
    "contrastive+cosent": {"distill_weight": 0.0, "scored_pairs": STS_SCORED},
    "contrastive+cosent+table": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "train_table": True,
    },
    "contrastive+cosent+table-6-epochs": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "train_table": True,
        "epochs": 6.0,
    },
    "contrastive+cosent3+table": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "cosent_weight": 3.0,
        "train_table": True,
    },
}


def training_triplets(path: Path, sts_min_score: float, seed: int = 0) -> Path:
    """One JSONL of (query, positive, negative): SNLI's triplets; STS-B train pairs scored at
    least ``sts_min_score`` (of 5) with another pair's sentence; each SciFact train claim with
    its abstract and another claim's abstract; each WikiQA question with its first answer and
    first same-page non-answer."""
    rng = random.Random(seed)
    rows = sts_train_triplets(sts_min_score, seed)
    with SNLI.open(encoding="utf-8", newline="") as handle:
        rows += [
            {"query": r["sent0"], "positive": r["sent1"], "negative": r["hard_neg"]}
            for r in csv.DictReader(handle)
        ]
    claims = [json.loads(line) for line in SCIFACT_TRAIN.read_text(encoding="utf-8").splitlines()]
    abstracts = [f"{c['title']} {c['text']}".strip() for c in claims]
    for claim, abstract in zip(claims, abstracts, strict=True):
        others = [a for a in rng.sample(abstracts, 4) if a != abstract]
        rows.append({"query": claim["query"], "positive": abstract, "negative": others[0]})
    for line in WIKIQA.read_text(encoding="utf-8").splitlines():
        question = json.loads(line)
        if question["pos"] and question["neg"]:
            rows.append(
                {
                    "query": question["query"],
                    "positive": question["pos"][0],
                    "negative": question["neg"][0],
                }
            )
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def distillation_texts(path: Path, count: int) -> Path:
    """A text file of ``count`` training sentences, taken in turn from each corpus."""
    per_corpus = count // len(SENTENCES)
    lines: list[str] = []
    for corpus in SENTENCES:
        with gzip.open(corpus, "rt", encoding="utf-8") as handle:
            lines += [line.strip() for _, line in zip(range(per_corpus), handle, strict=False)]
    path.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
    return path


def scores(model: str, full: bool) -> dict[str, Any]:
    """STS-B dev; with ``full`` also STS-B test and SciFact test (256, 64, binary)."""
    encoder = Encoder(model, backend="static")
    row: dict[str, Any] = {"sts_dev": round(evaluate_sts(encoder, STS_DEV)["spearman"], 2)}
    if full:
        small = Encoder(model, backend="static", truncate_dim=64)
        row["sts_test"] = round(evaluate_sts(encoder, STS_TEST)["spearman"], 2)
        row["sts_test_64"] = round(evaluate_sts(small, STS_TEST)["spearman"], 2)
        row["scifact_ndcg10"] = round(evaluate_retrieval(encoder, SCIFACT)["ndcg@10"], 2)
        row["scifact_ndcg10_64"] = round(
            evaluate_retrieval(encoder, SCIFACT, truncate_dim=64)["ndcg@10"], 2
        )
        row["scifact_ndcg10_binary"] = round(
            evaluate_retrieval(encoder, SCIFACT, precision="binary")["ndcg@10"], 2
        )
    print(model, row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="all-minilm-l6-v2")
    parser.add_argument("--texts", type=int, default=60_000, help="sentences to distil on")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument(
        "--sts-min-score", type=float, default=4.0, help="STS-B train pairs kept (6: none)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="names of CONFIGS to try")
    parser.add_argument(
        "--distill-dim",
        type=int,
        default=256,
        help="components of the distillation (above 256: a trained projection to 256)",
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for the models")
    parser.add_argument("--output", type=Path, default=RESULTS / "static_training.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    base = args.work / "distilled"
    if not base.exists():
        distill(args.teacher, base, dim=args.distill_dim)
    distill_s = time.perf_counter() - start
    texts = distillation_texts(args.work / "texts.txt", args.texts)
    shared = {
        "model": str(base),
        "data": str(training_triplets(args.work / "triplets.jsonl", args.sts_min_score)),
        "texts": str(texts),
        "teacher": args.teacher,
        "matryoshka_dims": (64, 128, 256),
        "dim": 256,
        "binary": True,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "show_progress": False,
    }
    scored = str(sts_train_scored(args.work / "sts-train-scored.jsonl"))
    trained: dict[str, Any] = {}
    for name in args.configs.split(","):
        options = {**shared, **CONFIGS[name], "output": str(args.work / name)}
        if options.get("scored_pairs") == STS_SCORED:
            options["scored_pairs"] = scored
        begin = time.perf_counter()
        folder = train_static(**options)
        record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        trained[name] = {
            "options": {k: v for k, v in options.items() if k != "output"},
            "train_seconds": round(time.perf_counter() - begin, 1),
            "steps": record["steps"],
            **scores(str(folder), full=False),
        }
    best = max(trained, key=lambda name: trained[name]["sts_dev"])
    report = {
        "benchmark": "static_training",
        "versions": versions("wordllama"),
        "machine": machine(),
        "teacher": args.teacher,
        "distill_seconds": round(distill_s, 1),
        "distillation_texts": args.texts,
        "chosen_on_sts_dev": best,
        "tried": trained,
        "results": {
            "wordllama": scores("wordllama", full=True),
            "distilled (untrained)": scores(str(base), full=True),
            f"trained ({best})": {**trained[best], **scores(str(args.work / best), full=True)},
        },
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
