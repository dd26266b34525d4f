"""The static backend's file format: where a static model's codebook and tokenizer live, and
reading them (:mod:`llmvec.static` makes such a folder from an LLM).

A static model is a codebook of token vectors plus the tokenizer that indexes it. A folder holds

- ``model.safetensors`` with ``embeddings`` ``(vocab, dim)`` and, optionally, ``token_weights``
  ``(vocab,)`` that scale each token's vector before averaging (model2vec's weighting);
- the tokenizer (``tokenizer.json``, and ``tokenizer_config.json`` when saved by transformers).

model2vec's folders (``weights`` and ``mapping`` tensors, ``config.json``) and
sentence-transformers' ``StaticEmbedding`` folders (``0_StaticEmbedding/``) load as they are.

``"wordllama"`` names the 256-d ``l2_supercat`` model shipped inside the ``wordllama`` package,
read straight from its files (its own loader looks for the tokenizer in the wrong folder); the
packaged names are listed in :data:`llmvec.models.PACKAGED_STATIC_MODELS`.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llmvec.models import (
    PACKAGED_STATIC_MODELS,
    ModelLocation,
    PackagedStaticModel,
    fingerprint,
    package_dir,
)

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
#: Where sentence-transformers keeps a ``StaticEmbedding`` module's files.
SENTENCE_TRANSFORMERS_FOLDER = "0_StaticEmbedding"
EMBEDDINGS_KEY = "embeddings"
TOKEN_WEIGHTS_KEY = "token_weights"
#: Tensor names read as the codebook, in order (llmvec and model2vec, then WordLlama).
_CODEBOOK_KEYS = (EMBEDDINGS_KEY, "embedding.weight")
#: Per-token weights, in order (llmvec, then model2vec).
_TOKEN_WEIGHT_KEYS = (TOKEN_WEIGHTS_KEY, "weights")
#: model2vec's vocabulary quantization: the codebook row of each token id.
MAPPING_KEY = "mapping"


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
    if (folder / SENTENCE_TRANSFORMERS_FOLDER / WEIGHTS_FILE).is_file():
        folder = folder / SENTENCE_TRANSFORMERS_FOLDER
    missing = [name for name in (WEIGHTS_FILE, TOKENIZER_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"static model folder {model!r} lacks {missing}; make one with llmvec.static.extract"
        )
    return StaticModelFiles(
        folder / WEIGHTS_FILE,
        folder / TOKENIZER_FILE,
        revision=fingerprint(ModelLocation(str(folder.resolve()))),
    )


@dataclass(frozen=True)
class Codebook:
    """A static model's tensors as stored: the token vectors, optional per-token weights
    (indexed by token id) and, for a vocabulary-quantized model2vec model, each token's row."""

    embeddings: np.ndarray
    token_weights: np.ndarray | None = None
    mapping: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        """How many token ids the codebook covers."""
        return int(len(self.mapping) if self.mapping is not None else len(self.embeddings))

    def table(self) -> np.ndarray:
        """One row per token id (a quantized vocabulary's mapping applied), unweighted."""
        return self.embeddings if self.mapping is None else self.embeddings[self.mapping]

    def rows(self) -> np.ndarray:
        """One float32 row per token id, its weight folded in: what a text's tokens average."""
        rows = self.table()
        if self.token_weights is not None:
            rows = rows * self.token_weights[:, None]
        return np.ascontiguousarray(rows, dtype=np.float32)


def load_codebook(files: StaticModelFiles) -> Codebook:
    """Read and check a static model's tensors (float16 / float32 / float64 are read as float32)."""
    with safe_open(str(files.weights), framework="numpy") as handle:
        keys = set(handle.keys())
        key = next((name for name in _CODEBOOK_KEYS if name in keys), None)
        if key is None:
            raise ValueError(
                f"{str(files.weights)!r} has no codebook tensor; expected one of "
                f"{list(_CODEBOOK_KEYS)}, found {sorted(keys)[:5]}; to use a full LLM's token "
                "embeddings, make a static model with llmvec.static.extract"
            )
        tensors = {name: handle.get_tensor(name) for name in keys}
    embeddings = tensors[key]
    if embeddings.dtype.kind != "f":
        raise ValueError(
            f"codebook {key!r} is stored as {embeddings.dtype}; llmvec reads float codebooks "
            "only (save a quantized model2vec model again with quantize_to='float16')"
        )
    if embeddings.ndim != 2:
        raise ValueError(f"codebook {key!r} must be 2-D, got shape {tuple(embeddings.shape)}")
    weights_key = next((name for name in _TOKEN_WEIGHT_KEYS if name in keys), None)
    weights = None if weights_key is None else tensors[weights_key].astype(np.float32)
    mapping = tensors.get(MAPPING_KEY)
    if mapping is not None and (
        mapping.ndim != 1
        or mapping.dtype.kind not in "iu"
        or (len(mapping) and not 0 <= int(mapping.min()) <= int(mapping.max()) < len(embeddings))
    ):
        raise ValueError(
            f"{MAPPING_KEY!r} must list a codebook row (0 to {len(embeddings) - 1}) per token"
        )
    codebook = Codebook(embeddings.astype(np.float32), weights, mapping)
    if weights is not None and weights.shape != (codebook.vocab_size,):
        raise ValueError(
            f"{weights_key!r} has shape {tuple(weights.shape)}, expected ({codebook.vocab_size},)"
        )
    return codebook


def codebook_dim(files: StaticModelFiles) -> int:
    """The codebook's dimension, read from the safetensors header alone."""
    with safe_open(str(files.weights), framework="numpy") as handle:
        keys = set(handle.keys())
        key = next((name for name in _CODEBOOK_KEYS if name in keys), None)
        shape = None if key is None else handle.get_slice(key).get_shape()
    if shape is None or len(shape) != 2:
        raise ValueError(f"{str(files.weights)!r} holds no 2-D codebook {list(_CODEBOOK_KEYS)}")
    return int(shape[1])


#: The special tokens a ``tokenizer_config.json`` may name.
_SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def load_tokenizer(files: StaticModelFiles) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a static model: its ``tokenizer.json`` with the special tokens
    named in the ``tokenizer_config.json`` beside it (or the packaged model's). Built directly,
    not through ``AutoTokenizer``, whose import alone takes seconds: a static model needs
    nothing but the fast tokenizer."""
    specials = dict(files.special_tokens)
    config_file = files.tokenizer.parent / "tokenizer_config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(config_file)!r} is not valid JSON: {error}") from None
        for name in _SPECIAL_TOKEN_NAMES:
            value = config.get(name)
            if isinstance(value, dict):  # an AddedToken, as older transformers saved it
                value = value.get("content")
            if isinstance(value, str):
                specials[name] = value
    return PreTrainedTokenizerFast(tokenizer_file=str(files.tokenizer), **specials)


def load_static_model(model: str) -> tuple[StaticModelFiles, PreTrainedTokenizerBase, Codebook]:
    """A static model's files, fast tokenizer and codebook, checked to cover every token id."""
    files = locate(model)
    tokenizer = load_tokenizer(files)
    codebook = load_codebook(files)
    if len(tokenizer) > codebook.vocab_size:
        raise ValueError(
            f"static model {model!r}: the tokenizer has {len(tokenizer)} tokens but the "
            f"codebook only {codebook.vocab_size} rows"
        )
    return files, tokenizer, codebook
