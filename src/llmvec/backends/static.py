"""Static backend: the "hidden states" of a token are its codebook row (layer 0 is the only one).

Mean pooling (the WordLlama / model2vec vector) takes the lean path of
:mod:`llmvec.backends.static_means`; other recipes (a template, another pooling) go through the
encoder's usual steps. Either way Matryoshka truncation, normalisation and compression follow,
and inputs carry no special tokens (a static model has no attention for them to condition).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llmvec.backends.devices import resolve_device, resolve_dtype
from llmvec.backends.static_files import load_static_model
from llmvec.backends.static_means import TokenMeans

logger = logging.getLogger(__name__)


class StaticBackend:
    """Token-vector lookup for a static model: ``wordllama`` or a folder from
    :func:`llmvec.static.extract` (or model2vec's layout)."""

    name = "static"
    num_layers = 0
    #: No attention: no prefix to cache.
    causal = False
    #: Inputs carry no special tokens (WordLlama and model2vec average the text tokens only).
    special_tokens = False
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
        self.dtype = resolve_dtype(dtype, self.device)
        files, self.tokenizer, codebook = load_static_model(model)
        rows = codebook.rows()
        self.means = TokenMeans(self.tokenizer, rows)
        #: Each token's row with its weight folded in, for the general path.
        self.embeddings = torch.from_numpy(rows).to(self.device, self.dtype)
        self.hidden_size = int(rows.shape[1])
        self.model_revision = files.revision
        logger.debug("loaded static model %s %s on %s", model, rows.shape, self.device)

    def mean_vectors(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """Float32 ``(len(texts), hidden_size)``: each text's mean token row (its first
        ``max_tokens`` tokens, no special tokens, the unknown token left out)."""
        return self.means(texts, max_tokens)

    def mean_vectors_of_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Float32 ``(len(ids), hidden_size)``: the mean row of each list of pooled ids (the
        unknown token left out, an empty list giving a zero vector)."""
        return self.means.of_ids(ids)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """Each token's codebook row, scaled by its token weight when the model has them."""
        if layer != 0:
            raise ValueError(f"a static model has only layer 0, got layer {layer}")
        return F.embedding(input_ids.to(self.device), self.embeddings)
