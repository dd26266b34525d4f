"""Static embedding models (WordLlama, model2vec style) made from an LLM: its input-embedding
matrix, PCA-reduced, with Zipf / SIF token weights. This is the heavy path (it loads a whole model
through the transformers backend); the file format the static backend reads is
:mod:`llmvec.backends.static_files`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from llmvec.backends.static_files import EMBEDDINGS_KEY, TOKEN_WEIGHTS_KEY, WEIGHTS_FILE
from llmvec.backends.transformers import TransformersBackend

logger = logging.getLogger(__name__)


def principal_components(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Project ``matrix`` (rows are samples) on its first ``dim`` principal components.

    Rows are centred first; each component's sign is fixed so that its largest loading is
    positive, which makes the result reproducible.
    """
    data = matrix.double()
    centered = data - data.mean(dim=0)
    covariance = centered.T @ centered / max(len(data) - 1, 1)
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    components = vectors[:, -dim:].flip(-1)
    largest = components.abs().argmax(dim=0)
    components = components * torch.sign(components[largest, torch.arange(dim)])
    projected: torch.Tensor = centered @ components
    return projected.float()


def zipf_sif_weights(vocab_size: int, coefficient: float) -> torch.Tensor:
    """SIF weights ``a / (a + p(t))`` with ``p`` estimated by Zipf's law from the token's id.

    BPE vocabularies are ordered roughly by frequency, so token ``i`` gets ``p = 1 / ((i + 1) H)``
    (``H`` the harmonic number of the vocabulary), the estimate model2vec uses.
    """
    if not coefficient > 0 or not math.isfinite(coefficient):
        raise ValueError(f"sif_coefficient must be a positive number, got {coefficient!r}")
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64)
    probabilities = 1.0 / (ranks * (1.0 / ranks).sum())
    return (coefficient / (coefficient + probabilities)).float()


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
    backend = TransformersBackend(model, device="cpu", dtype="float32", **backend_kwargs)
    weight = backend.model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    matrix = weight.detach().float()
    if dim is not None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= matrix.shape[1]:
            raise ValueError(f"dim must be an integer from 1 to {matrix.shape[1]}, got {dim!r}")
        matrix = principal_components(matrix, dim)
    tensors = {EMBEDDINGS_KEY: matrix.contiguous()}
    if sif_coefficient is not None:
        tensors[TOKEN_WEIGHTS_KEY] = zipf_sif_weights(matrix.shape[0], sif_coefficient)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "source_model": model,
        "source_revision": backend.model_revision or "",
        "pca_dim": str(dim or ""),
        "sif_coefficient": "" if sif_coefficient is None else repr(sif_coefficient),
    }
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata=metadata)
    backend.tokenizer.save_pretrained(folder)
    logger.info("extracted a %s static model from %s to %s", tuple(matrix.shape), model, folder)
    return folder
