"""What every way of making a static model shares: PCA, Zipf / SIF token weights, and writing
the folder the static backend reads (:mod:`llmvec.backends.static_files`), atomically."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from llmvec.backends.static_files import EMBEDDINGS_KEY, TOKEN_WEIGHTS_KEY, WEIGHTS_FILE
from llmvec.index.storage import atomic_directory, refuse_foreign_folder


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


def check_static_output(path: str | Path) -> None:
    """Refuse, before any work, an output that exists and is neither empty nor a static model."""
    refuse_foreign_folder(path, WEIGHTS_FILE, "a static model folder")


def write_static_model(
    path: str | Path,
    embeddings: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    token_weights: torch.Tensor | None = None,
    metadata: Mapping[str, str] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write a static model's folder: its codebook (and token weights), tokenizer, and
    ``extra_files`` (file name -> UTF-8 text, e.g. a training record).

    The folder appears whole or not at all; an existing folder is replaced only when it is a
    static model (or empty), never another kind of folder.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {tuple(embeddings.shape)}")
    tensors = {EMBEDDINGS_KEY: embeddings.detach().float().contiguous()}
    if token_weights is not None:
        if token_weights.shape != (len(embeddings),):
            raise ValueError(
                f"token_weights has shape {tuple(token_weights.shape)}, expected "
                f"({len(embeddings)},)"
            )
        tensors[TOKEN_WEIGHTS_KEY] = token_weights.detach().float().contiguous()
    extra = dict(extra_files or {})
    for name in extra:
        if not name or name != Path(name).name or name == "..":
            raise ValueError(f"extra file name {name!r} must be a plain file name")
    with atomic_directory(path, WEIGHTS_FILE) as staging:
        tokenizer.save_pretrained(staging)
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata=dict(metadata or {}))
        for name, text in extra.items():
            if (staging / name).exists():
                raise ValueError(f"extra file {name!r} would replace one of the model's files")
            (staging / name).write_text(text, encoding="utf-8")
    return Path(path).expanduser().absolute()
