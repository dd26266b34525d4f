"""The protocols backends implement: token level (hidden states of one layer) or pooled (an
engine with its own pooler)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TokenizedText:
    """Token ids of one input (built by :class:`~llmvec.encoding.inputs.InputBuilder`), the
    first index that pooling may read, whether the text was cut to fit ``max_length``, and
    whether the text gave no tokens (what is pooled then stands in for it)."""

    ids: list[int]
    pool_start: int
    truncated: bool = False
    no_text: bool = False


@runtime_checkable
class ModelInfo(Protocol):
    """What callers read of every engine: its tokenizer, the model's shape and how it runs."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    num_layers: int
    hidden_size: int
    #: Whether each token attends to the earlier ones only, as loaded (a shared prefix can then
    #: be run once and cached): decoders, unless run bidirectionally.
    causal: bool
    #: Whether leading special tokens (BERT's CLS) may be pooled: not a decoder's BOS, an
    #: attention sink, nor a static model's (WordLlama averages the text tokens only).
    pool_prefix_specials: bool
    #: Whether inputs carry the tokenizer's special tokens (BOS, CLS / SEP): not a static
    #: model's.
    special_tokens: bool
    device: torch.device
    #: Whether llmvec compiled the model's blocks (their first passes over new shapes compile).
    compiled: bool
    model_revision: str | None

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the weights compute in within this process; ``None`` where an engine
        outside it (vLLM) holds them."""
        ...


@runtime_checkable
class Backend(ModelInfo, Protocol):
    """Token ids in, hidden states of one layer out. Knows nothing of templates or pooling."""

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """States ``(batch, seq, hidden)`` after ``layer`` (0 = embeddings, ``num_layers`` = the
        model's final output), on the backend's device. Layers after ``layer`` are not computed.
        The inputs may be on the CPU: the backend moves them (the encoder builds batches there,
        so reading them never waits for the GPU)."""
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
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As :meth:`Backend.hidden_states`; with ``prefix`` the inputs continue it and
        ``attention_mask`` covers only the new tokens; with ``positions`` (one column per row)
        only those states are computed to the end and returned, ``(batch, 1, hidden)``."""
        ...


@runtime_checkable
class TextMeanBackend(Backend, Protocol):
    """A backend that averages token rows straight from texts (the static backend's lean path),
    for mean pooling without a template; the same vectors as its hidden states' mean."""

    def mean_vectors(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """Float32 ``(len(texts), hidden_size)``: each text's mean token row, over at most
        ``max_tokens`` tokens."""
        ...

    def mean_vectors_of_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Float32 ``(len(ids), hidden_size)``: the mean token row of each list of pooled ids
        (what :meth:`mean_vectors` gives for the texts they were tokenized from)."""
        ...


@runtime_checkable
class PooledBackend(ModelInfo, Protocol):
    """An engine with its own pooler (vLLM): token ids in, one vector per input out.

    The encoder still builds the ids (template, instruction, BOS/EOS, truncation); the engine
    pools over all of an input's tokens at the model's last layer, so only some recipes give
    llmvec's vector. :meth:`check` tells which, before any work.
    """

    def check(self, inputs: Sequence[TokenizedText], pooling: str, layer: int) -> None:
        """Raise ``ValueError`` naming the alternative unless the engine gives llmvec's vector
        for ``pooling`` at ``layer`` (absolute) over ``inputs``, whose pooling starts at each
        ``pool_start``."""
        ...

    def embed(
        self, inputs: Sequence[TokenizedText], pooling: str, layer: int, show_progress: bool
    ) -> torch.Tensor:
        """Vectors ``(len(inputs), hidden_size)`` in float32 on the CPU, not normalised. Runs
        :meth:`check` first."""
        ...
