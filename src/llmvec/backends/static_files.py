"""The static backend's file format: where a static model's codebook and tokenizer live, and
reading them (:mod:`llmvec.static` makes such a folder from an LLM).

A static model is a codebook of token vectors plus the tokenizer that indexes it. A folder holds

- ``model.safetensors`` with ``embeddings`` ``(vocab, dim)`` and, optionally, ``token_weights``
  ``(vocab,)`` that scale each token's vector before averaging (model2vec's weighting);
- the tokenizer (``tokenizer.json``, and ``tokenizer_config.json`` when saved by transformers).

``"wordllama"`` names the 256-d ``l2_supercat`` model shipped inside the ``wordllama`` package,
read straight from its files (its own loader looks for the tokenizer in the wrong folder); the
packaged names are listed in :data:`llmvec.models.PACKAGED_STATIC_MODELS`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llmvec.models import (
    PACKAGED_STATIC_MODELS,
    ModelLocation,
    PackagedStaticModel,
    fingerprint,
    package_dir,
)

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
