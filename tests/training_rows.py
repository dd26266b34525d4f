"""Training rows shared by the transformers and static trainers' tests."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = ["cats", "dogs", "rivers", "stars", "music", "bread", "trains", "rain"]
#: Sentence pairs scored by how much of their topic they share: 4 (both words), 2 (one), 0.
SCORED = [
    {
        "sentence1": f"{TOPICS[i % 8]} and {TOPICS[(i + 1) % 8]}",
        "sentence2": f"{TOPICS[(i + shift) % 8]} with {TOPICS[(i + 1 + shift * 3) % 8]}",
        "score": {0: 4.0, 1: 2.0}.get(shift, 0.0),
    }
    for i in range(8)
    for shift in (0, 1, 2, 4)
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    """``rows`` as one JSON object per line at ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
