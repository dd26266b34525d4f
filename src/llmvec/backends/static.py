"""Static backend: the "hidden states" of a token are its codebook row (layer 0 is the only one).

With it the encoder's usual steps apply unchanged: mean pooling over the text tokens gives the
WordLlama / model2vec vector, and Matryoshka truncation, normalisation and compression follow.
Special tokens (a BOS the tokenizer adds) are never pooled, as in WordLlama.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from llmvec.backends.devices import resolve_device, resolve_dtype
from llmvec.backends.static_files import load_codebook, load_tokenizer, locate

logger = logging.getLogger(__name__)


class StaticBackend:
    """Token-vector lookup for a static model: ``wordllama`` or a folder from
    :func:`llmvec.static.extract` (or model2vec's layout)."""

    name = "static"
    num_layers = 0
    #: No attention: no prefix to cache.
    causal = False
    #: Leading special tokens are not pooled (WordLlama averages the text tokens only).
    pool_prefix_specials = False
    compiled = False

    def __init__(
        self,
        model: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        bidirectional: bool = False,
        **unsupported: Any,
    ) -> None:
        self.device = resolve_device(device)
        if quantization is not None:
            raise ValueError(
                f"quantization={quantization!r} does not apply to the static backend; compress "
                "its vectors with encode(precision=...) instead"
            )
        if bidirectional:
            raise ValueError("bidirectional=True does not apply to a static model: no attention")
        if unsupported:
            raise TypeError(f"the static backend takes no arguments {sorted(unsupported)}")
        files = locate(model)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = load_tokenizer(files)
        if not self.tokenizer.is_fast:
            raise ValueError(f"static model {model!r} needs a fast tokenizer")
        codebook, weights = load_codebook(files)
        if len(self.tokenizer) > codebook.shape[0]:
            raise ValueError(
                f"static model {model!r}: the tokenizer has {len(self.tokenizer)} tokens but the "
                f"codebook only {codebook.shape[0]} rows"
            )
        self.embeddings = codebook.to(self.device, self.dtype)
        self.token_weights = None if weights is None else weights.to(self.device, self.dtype)
        self.hidden_size = int(codebook.shape[1])
        self.model_revision = files.revision
        logger.debug("loaded static model %s %s on %s", model, tuple(codebook.shape), self.device)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """Each token's codebook row, scaled by its token weight when the model has them."""
        if layer != 0:
            raise ValueError(f"a static model has only layer 0, got layer {layer}")
        input_ids = input_ids.to(self.device)
        vectors = F.embedding(input_ids, self.embeddings)
        if self.token_weights is not None:
            vectors = vectors * self.token_weights[input_ids].unsqueeze(-1)
        return vectors
