"""Static embedding models (WordLlama, model2vec style): one vector per token, averaged.

A static model is a codebook of token vectors plus the tokenizer that indexes it. A folder holds

- ``model.safetensors`` with ``embeddings`` ``(vocab, dim)`` and, optionally, ``token_weights``
  ``(vocab,)`` that scale each token's vector before averaging (model2vec's weighting);
- the tokenizer (``tokenizer.json``, and ``tokenizer_config.json`` when saved by transformers).

:func:`extract` makes one from any LLM's input-embedding matrix (optionally PCA-reduced), and
``"wordllama"`` names the 256-d ``l2_supercat`` model shipped inside the ``wordllama`` package,
read straight from its files (its own loader looks for the tokenizer in the wrong folder); the
packaged names are listed in :data:`llmvec.models.PACKAGED_STATIC_MODELS`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llmvec.models import (
    PACKAGED_STATIC_MODELS,
    ModelLocation,
    PackagedStaticModel,
    fingerprint,
    package_dir,
)

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
EMBEDDINGS_KEY = "embeddings"
TOKEN_WEIGHTS_KEY = "token_weights"
#: Tensor names read as the codebook, in order (llmvec and model2vec, then WordLlama).
_CODEBOOK_KEYS = (EMBEDDINGS_KEY, "embedding.weight")


@dataclass(frozen=True)
class StaticModelFiles:
    """Where a static model's codebook and tokenizer live."""

    weights: Path
    tokenizer: Path
    #: Special tokens for a bare ``tokenizer.json`` (no ``tokenizer_config.json`` beside it).
    special_tokens: tuple[tuple[str, str], ...] = ()
    revision: str | None = None


def _packaged(model: PackagedStaticModel) -> StaticModelFiles:
    root = package_dir(model.package)
    version = importlib.metadata.version(model.package)
    return StaticModelFiles(
        weights=root / model.weights,
        tokenizer=root / model.tokenizer,
        special_tokens=model.special_tokens,
        revision=f"{model.package}=={version}:{Path(model.weights).stem}",
    )


def locate(model: str) -> StaticModelFiles:
    """Resolve a packaged name (``wordllama``) or a static-model folder."""
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if model.lower() in PACKAGED_STATIC_MODELS:
        return _packaged(PACKAGED_STATIC_MODELS[model.lower()])
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"static model {model!r} is neither a packaged name "
            f"{sorted(PACKAGED_STATIC_MODELS)} nor a folder"
        )
    missing = [name for name in (WEIGHTS_FILE, "tokenizer.json") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"static model folder {model!r} lacks {missing}; make one with llmvec.static.extract"
        )
    return StaticModelFiles(
        folder / WEIGHTS_FILE,
        folder / "tokenizer.json",
        revision=fingerprint(ModelLocation(str(folder.resolve()))),
    )


def load_codebook(files: StaticModelFiles) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``(vocab, dim)`` float32 codebook and the optional ``(vocab,)`` token weights."""
    with safe_open(str(files.weights), framework="pt") as handle:
        keys = set(handle.keys())
        key = next((name for name in _CODEBOOK_KEYS if name in keys), None)
        if key is None:
            raise ValueError(
                f"{str(files.weights)!r} has no codebook tensor; expected one of "
                f"{list(_CODEBOOK_KEYS)}, found {sorted(keys)[:5]}; to use a full LLM's token "
                "embeddings, make a static model with llmvec.static.extract"
            )
        codebook = handle.get_tensor(key).float()
        weights = None
        if TOKEN_WEIGHTS_KEY in keys:
            weights = handle.get_tensor(TOKEN_WEIGHTS_KEY).float()
    if codebook.ndim != 2:
        raise ValueError(f"codebook {key!r} must be 2-D, got shape {tuple(codebook.shape)}")
    if weights is not None and weights.shape != (codebook.shape[0],):
        raise ValueError(
            f"{TOKEN_WEIGHTS_KEY!r} has shape {tuple(weights.shape)}, expected "
            f"({codebook.shape[0]},)"
        )
    return codebook, weights


def load_tokenizer(files: StaticModelFiles) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a static model."""
    if (files.tokenizer.parent / "tokenizer_config.json").is_file():
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(files.tokenizer.parent)
        return tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_file=str(files.tokenizer), **dict(files.special_tokens)
    )


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
    from llmvec.backends.transformers import TransformersBackend

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
