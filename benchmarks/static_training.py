"""Static models trained here: all-MiniLM-L6-v2 distilled to 256-d (``llmvec.static.distill``),
then trained by ``llmvec.static.train_static`` with the contrastive loss on training triplets
(SNLI, STS-B train pairs scored 4 or more, SciFact train claims with their abstracts, WikiQA
questions with an answer and a same-page non-answer), CoSENT on every STS-B train pair with its
score, and a distillation to all-MiniLM-L6-v2 on training sentences, Matryoshka prefixes (64,
128, 256) and the binary term; against WordLlama 256-d and the untrained distilled model, same
run.

Each trained model is also tried with 1 to 5 common components removed
(``llmvec.static.remove_common_components``, SIF's top singular directions of its vectors of the
distillation sentences). Settings are chosen on STS-B dev (each ``--configs`` entry and
component count is scored there); the best pair is then scored once on STS-B test and SciFact
test at 256 and 64 dimensions and binary.

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
from llmvec.static import distill, remove_common_components, train_static

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
#: Common components (SIF) removed from each trained model, tried on STS-B dev (0: none).
COMPONENT_COUNTS = (0, 1, 2, 3, 4, 5)
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
    "contrastive+cosent+table-batch-256": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "train_table": True,
        "batch_size": 256,
    },
    "contrastive+cosent+table-lr3e-3": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "train_table": True,
        "learning_rate": 3e-3,
    },
    "contrastive+cosent+vectors+table": {
        "distill_loss": "vectors",
        "scored_pairs": STS_SCORED,
        "train_table": True,
    },
    # Distilled to the teacher's 384 components, then projected to 256 by the trained projection.
    "contrastive+cosent+table-from-384": {
        "distill_weight": 0.0,
        "scored_pairs": STS_SCORED,
        "train_table": True,
        "distill_dim": 384,
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


def without_common(folder: Path, count: int, texts: list[str]) -> tuple[Path, float]:
    """``folder`` with ``count`` common components of ``texts`` removed (0: as it is), and its
    STS-B dev score."""
    if count:
        folder = remove_common_components(
            str(folder), folder.with_name(f"{folder.name}-minus-{count}"), texts, count
        )
    return folder, scores(str(folder), full=False)["sts_dev"]


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
        help="components of the distillation for configs without their own distill_dim "
        "(above 256: a trained projection to 256)",
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for the models")
    parser.add_argument("--output", type=Path, default=RESULTS / "static_training.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    distill_seconds: dict[int, float] = {}

    def distilled(dim: int) -> Path:
        """The teacher distilled to ``dim`` components (made once per work folder)."""
        folder = args.work / f"distilled-{dim}"
        if not folder.exists():
            start = time.perf_counter()
            distill(args.teacher, folder, dim=dim)
            distill_seconds[dim] = round(time.perf_counter() - start, 1)
        return folder

    texts = distillation_texts(args.work / "texts.txt", args.texts)
    fitted = texts.read_text(encoding="utf-8").splitlines()

    shared = {
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
    folders: dict[str, dict[int, Path]] = {}  # config -> component count -> its model
    for name in args.configs.split(","):
        config = dict(CONFIGS[name])
        dim = config.pop("distill_dim", args.distill_dim)
        options = {**shared, **config, "output": str(args.work / name)}
        options.setdefault("model", str(distilled(dim)))
        if options.get("scored_pairs") == STS_SCORED:
            options["scored_pairs"] = scored
        begin = time.perf_counter()
        folder = train_static(**options)
        record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        train_seconds = round(time.perf_counter() - begin, 1)
        swept = {count: without_common(folder, count, fitted) for count in COMPONENT_COUNTS}
        folders[name] = {count: path for count, (path, _) in swept.items()}
        trained[name] = {
            "options": {k: v for k, v in options.items() if k != "output"},
            "train_seconds": train_seconds,
            "steps": record["steps"],
            "sts_dev_by_common_components": {count: dev for count, (_, dev) in swept.items()},
        }
    best, count = max(
        ((name, count) for name in trained for count in COMPONENT_COUNTS),
        key=lambda pair: trained[pair[0]]["sts_dev_by_common_components"][pair[1]],
    )  # first of equals: CONFIGS order, then fewer components
    final = folders[best][count]
    report = {
        "benchmark": "static_training",
        "versions": versions("wordllama"),
        "machine": machine(),
        "teacher": args.teacher,
        "distill_seconds_by_dim": distill_seconds,
        "distillation_texts": args.texts,
        "chosen_on_sts_dev": best,
        "common_components_chosen_on_sts_dev": count,
        "common_components_fitted_on": f"the {len(fitted)} distillation sentences",
        "tried": trained,
        "results": {
            "wordllama": scores("wordllama", full=True),
            "distilled (untrained)": scores(str(distilled(args.distill_dim)), full=True),
            f"trained ({best}, {count} common components removed)": {
                **trained[best],
                **scores(str(final), full=True),
            },
        },
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
