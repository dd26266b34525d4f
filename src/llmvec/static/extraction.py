"""A static model made of an LLM's input-embedding matrix (WordLlama's starting point),
PCA-reduced, with Zipf / SIF token weights. The heavy path: it loads a whole model through the
transformers backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from llmvec.backends.transformers import TransformersBackend
from llmvec.static.codebook import (
    check_static_output,
    principal_components,
    write_static_model,
    zipf_sif_weights,
)

logger = logging.getLogger(__name__)


def extract(
    model: str,
    path: str | Path,
    dim: int | None = None,
    *,
    sif_coefficient: float | None = None,
    **backend_kwargs: Any,
) -> Path:
    """Write a static model made of ``model``'s input-embedding matrix to the folder ``path``.

    Args:
        model: anything :class:`~llmvec.Encoder` loads with the transformers backend (packaged
            name, hub id, folder, ``.gguf`` file).
        path: output folder (created); load it with ``Encoder(path, backend="static")``.
        dim: reduce the vectors to this many principal components (``None`` keeps all).
        sif_coefficient: also store SIF token weights (see :func:`zipf_sif_weights`), e.g. 1e-3.
        **backend_kwargs: passed to the transformers backend (``revision``, ``model_kwargs``...).

    Note: models that scale their embeddings in the forward pass (Gemma multiplies by
    ``sqrt(hidden)``) differ from these raw rows by that constant only; it cancels in cosine
    similarity and in normalised vectors.
    """
    check_static_output(path)
    backend = TransformersBackend(model, device="cpu", dtype="float32", **backend_kwargs)
    weight = backend.model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    matrix = weight.detach().float()
    if dim is not None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= matrix.shape[1]:
            raise ValueError(f"dim must be an integer from 1 to {matrix.shape[1]}, got {dim!r}")
        matrix = principal_components(matrix, dim)
    weights = None if sif_coefficient is None else zipf_sif_weights(len(matrix), sif_coefficient)
    metadata = {
        "source_model": model,
        "source_revision": backend.model_revision or "",
        "pca_dim": str(dim or ""),
        "sif_coefficient": "" if sif_coefficient is None else repr(sif_coefficient),
    }
    folder = write_static_model(path, matrix, backend.tokenizer, weights, metadata)
    logger.info("extracted a %s static model from %s to %s", tuple(matrix.shape), model, folder)
    return folder
