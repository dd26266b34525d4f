"""What every benchmark report shares: the measured code and machine, the data, an atomic write.

Benchmarks import it as a sibling module (``python benchmarks/<script>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The shared evaluation data (``$LLMVEC_DATA`` where it lies elsewhere, e.g. on a GPU machine).
DATA = Path(os.environ.get("LLMVEC_DATA", ROOT.parent / "shared" / "data"))
STS_TEST = DATA / "stsbenchmark" / "sts-test.csv"
STS_TRAIN = DATA / "stsbenchmark" / "sts-train.csv"
RESULTS = ROOT / "benchmarks" / "results"
SCIFACT_TRAIN_QRELS = DATA / "train" / "scifact_qrels_train.tsv"
#: SciFact's dev split: a seeded sample of its train queries (none is a test query). Hybrid
#: weights are chosen on it, so the training recipes hold it out.
SCIFACT_DEV_QUERIES = 300
SCIFACT_DEV_SEED = 0


def source_revision() -> str:
    """The llmvec commit measured, with ``-dirty`` when the working tree had changes."""
    command = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of ``distributions`` (llmvec with its commit), ``absent`` if missing."""
    found: dict[str, str] = {}
    for name in ("llmvec", "torch", "transformers", *distributions):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    found["llmvec"] = f"{found['llmvec']} ({source_revision()})"
    return found


def machine() -> dict[str, Any]:
    """The processor, CPU count and load (other processes slow every library alike; ratios
    come from the same run)."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
    }


def scifact_dev_query_ids() -> list[str]:
    """The ids of SciFact's dev queries, sorted."""
    import random

    from llmvec.evaluation import load_qrels

    train = sorted(load_qrels(SCIFACT_TRAIN_QRELS))
    return sorted(random.Random(SCIFACT_DEV_SEED).sample(train, SCIFACT_DEV_QUERIES))


def sts_sentences(count: int) -> list[str]:
    """The first ``count`` distinct ``sentence1`` values of STS-B test."""
    from llmvec.evaluation import load_sts

    unique = list(dict.fromkeys(pair.sentence1 for pair in load_sts(STS_TEST)))
    if len(unique) < count:
        raise SystemExit(f"{STS_TEST} has only {len(unique)} distinct sentence1 values")
    return unique[:count]


def sts_train_triplets(min_score: float, seed: int = 0) -> list[dict[str, str]]:
    """STS-B train pairs scored at least ``min_score`` (of 5) as (query, positive, negative)
    rows, each negative another kept pair's ``sentence2``, drawn with ``seed``."""
    import random

    from llmvec.evaluation import load_sts

    rng = random.Random(seed)
    close = [pair for pair in load_sts(STS_TRAIN) if pair.score >= min_score]
    rows = []
    for pair in close:
        negative = rng.choice(close).sentence2
        rows.append({"query": pair.sentence1, "positive": pair.sentence2, "negative": negative})
    return rows


def sts_train_scored(path: Path) -> Path:
    """Every STS-B train pair with its gold score, as a scored-pairs JSONL (CoSENT's data)."""
    from llmvec.evaluation import load_sts

    rows = [
        {"sentence1": pair.sentence1, "sentence2": pair.sentence2, "score": pair.score}
        for pair in load_sts(STS_TRAIN)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON, atomically (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    print(f"wrote {path}")
