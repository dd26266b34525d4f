"""Test data and plain numpy references shared by the index tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 20) -> np.ndarray:
    """Unit vectors around a few centres, with a shared offset, like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)) + 0.5 * rng.standard_normal(dim)
    points = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search: (row indices, scores), best first."""
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def recall(found: list[object], expected: list[object]) -> float:
    """Share of ``expected`` that ``found`` contains."""
    return len(set(found) & set(expected)) / len(expected)


def example_texts() -> dict[str, str]:
    """The example documents, by file name."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.iterdir())}
