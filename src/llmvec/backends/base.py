"""The protocol every token-level backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedTokenizerBase


@runtime_checkable
class Backend(Protocol):
    """Token ids in, hidden states of one layer out. Knows nothing of templates or pooling."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    num_layers: int
    hidden_size: int
    #: Decoder-only (causal) models: their BOS state is an attention sink and is never pooled.
    is_decoder: bool
    device: torch.device
    model_revision: str | None

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """States ``(batch, seq, hidden)`` after ``layer`` (0 = embeddings, ``num_layers`` = the
        model's final output). Layers after ``layer`` are not computed."""
        ...
