"""The protocol every token-level backend implements."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class PrefixState:
    """Keys/values and states of a token prefix shared by every input (a template's preamble)."""

    ids: tuple[int, ...]
    layer: int
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    #: States at ``layer`` of the prefix tokens, ``(len(ids), hidden)``.
    hidden: torch.Tensor


@runtime_checkable
class PrefixCachingBackend(Backend, Protocol):
    """A causal backend that can run a shared prefix once and continue from its cache."""

    def prefix_state(self, ids: list[int], layer: int) -> PrefixState:
        """Run ``ids`` once; keep what continuing inputs need."""
        ...

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layer: int,
        prefix: PrefixState | None = None,
    ) -> torch.Tensor:
        """As :meth:`Backend.hidden_states`; with ``prefix`` the inputs continue it and
        ``attention_mask`` covers only the new tokens."""
        ...
