"""Common-component removal (SIF, Arora et al. 2017): the top singular directions of a static
model's sentence vectors over a corpus carry what nearly every text shares (frequent words,
style), not what tells texts apart. Projecting them out of every token row removes them from
every vector the model makes, since a text's vector is the mean of its rows: the result is an
ordinary static model, as fast as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llmvec.backends.static_files import load_static_model
from llmvec.backends.static_means import TokenMeans
from llmvec.static.codebook import check_static_output, write_static_model
from llmvec.validation import check_positive

#: The metadata key that records what was removed.
COMMON_COMPONENTS_KEY = "common_components"


def common_directions(vectors: np.ndarray, count: int) -> np.ndarray:
    """``(count, dim)`` orthonormal rows: the top right singular vectors of ``vectors`` (rows
    are texts), uncentred as in SIF; each sign fixed so its largest entry is positive."""
    if vectors.ndim != 2 or not 0 < count < vectors.shape[1] or count > len(vectors):
        raise ValueError(
            f"cannot take {count} common directions of {len(vectors)} vectors of dimension "
            f"{vectors.shape[-1]}: give from 1 to min(texts, dimension - 1)"
        )
    _, _, right = np.linalg.svd(vectors.astype(np.float64), full_matrices=False)
    directions = right[:count]
    largest = np.abs(directions).argmax(axis=1)
    directions *= np.sign(directions[np.arange(count), largest])[:, None]
    return directions


def without_directions(rows: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``rows`` with their part along each (orthonormal) direction subtracted, in float32."""
    rows64 = rows.astype(np.float64)
    removed: np.ndarray = (rows64 - (rows64 @ directions.T) @ directions).astype(np.float32)
    return removed


def remove_common_components(
    model: str,
    output: str | Path,
    texts: Sequence[str],
    count: int = 1,
    *,
    max_tokens: int = 512,
) -> Path:
    """Write ``model`` (any static model llmvec loads) to ``output`` with the ``count`` common
    directions of its vectors of ``texts`` projected out of every token row.

    ``texts`` should be like the texts the model will embed (a few thousand suffice). Everything
    is checked before anything is written; the folder appears whole or not at all.
    """
    check_positive("count", count)
    check_positive("max_tokens", max_tokens)
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty sequence of strings")
    check_static_output(output)
    files, tokenizer, codebook = load_static_model(model)
    rows = codebook.rows()
    vectors = TokenMeans(tokenizer, rows)(list(texts), max_tokens)
    directions = common_directions(vectors, count)
    record = {"count": count, "texts": len(texts), "source_model": model}
    return write_static_model(
        output,
        torch.from_numpy(without_directions(rows, directions)),
        tokenizer,
        metadata={
            "source_model": model,
            "source_revision": files.revision or "",
            COMMON_COMPONENTS_KEY: json.dumps(record, sort_keys=True),
        },
    )
