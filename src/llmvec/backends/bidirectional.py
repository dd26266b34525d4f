"""LLM2Vec-style bidirectional attention for decoder-only models, without patching their code.

transformers (5.x) lets one forward call switch a decoder's causal mask off: with
``model(..., is_causal=False)`` the mask builder makes a padding-only (bidirectional) mask and
every attention kernel (eager, sdpa, flash) is told not to add a causal one. The model's classes
and config are left as they are; the flag lives for that call only.

A model whose code ignored the flag would silently stay causal, so :func:`check_bidirectional`
proves on a probe that a token's state depends on a later token before any vector is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: Forward keyword arguments that turn the causal mask off for one call.
BIDIRECTIONAL_FORWARD_KWARGS: dict[str, Any] = {"is_causal": False}

HiddenStates = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forward_kwargs(bidirectional: bool, is_decoder: bool) -> dict[str, Any]:
    """Extra forward arguments for the requested attention direction.

    Encoders (BERT) are bidirectional already and get nothing; decoders get ``is_causal=False``
    when ``bidirectional``.
    """
    return dict(BIDIRECTIONAL_FORWARD_KWARGS) if bidirectional and is_decoder else {}


def _probe_ids(vocab_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if vocab_size < 8:
        raise ValueError(f"vocabulary of {vocab_size} tokens is too small to probe attention")
    first = vocab_size // 2
    ids = torch.arange(first, first + 4, device=device)[None]
    changed = ids.clone()
    changed[0, -1] = first + 4
    return ids, changed


def sees_later_tokens(hidden_states: HiddenStates, vocab_size: int, device: torch.device) -> bool:
    """Whether changing the last of four tokens changes any earlier token's state.

    ``hidden_states(input_ids, attention_mask)`` must return the states of the model's last
    layer for the given ids.
    """
    ids, changed = _probe_ids(vocab_size, device)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        before = hidden_states(ids, mask)[0, :-1].float()
        after = hidden_states(changed, mask)[0, :-1].float()
    return not torch.equal(before, after)


def check_bidirectional(
    hidden_states: HiddenStates, vocab_size: int, device: torch.device, model_name: str
) -> None:
    """Raise ``ValueError`` unless earlier tokens see a later one through ``hidden_states``."""
    if not sees_later_tokens(hidden_states, vocab_size, device):
        raise ValueError(
            f"bidirectional=True had no effect on {model_name!r}: earlier token states do not "
            "change when a later token changes. This model's transformers code does not honour "
            "`is_causal=False` (supported for Llama, Mistral, Qwen2/3, Gemma and most decoders "
            "in transformers 5.x); use bidirectional=False or upgrade transformers"
        )
