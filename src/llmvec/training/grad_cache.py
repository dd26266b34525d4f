"""GradCache (Gao et al., 2021): a contrastive loss over a batch far larger than what fits in
memory, with the gradients of the uncached loss.

The batch is embedded in chunks without a graph; the loss and its gradients with respect to
the vectors are computed on the whole batch; when the Trainer calls ``backward`` on the loss,
each chunk is embedded again with its graph (under the random state of its first pass, so
dropout draws the same masks) and backpropagated with its cached vector gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

Embed = Callable[[Sequence[Any]], torch.Tensor]


class _ForwardState:
    """What a chunk's first pass ran under: the CPU's and CUDA's generator states (dropout) and
    the autocast settings (the backward pass, where the chunk runs again, is outside them)."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.autocast = {
            device: torch.get_autocast_dtype(device)
            for device in ("cpu", "cuda")
            if torch.is_autocast_enabled(device)
        }

    @contextmanager
    def replayed(self) -> Iterator[None]:
        devices = list(range(torch.cuda.device_count())) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices), ExitStack() as stack:
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            for device, dtype in self.autocast.items():
                stack.enter_context(torch.autocast(device, dtype=dtype))
            yield


def cached_loss(
    embed: Embed,
    rows: Sequence[Any],
    loss: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int,
) -> torch.Tensor:
    """``loss(embed(rows))`` with ``embed`` run ``chunk_size`` rows at a time.

    With gradients enabled, the returned loss has no graph through ``embed`` of its own: its
    ``backward`` re-embeds each chunk and sends the cached gradients through it, so the model's
    parameters get exactly the gradients of the plain loss while at most one chunk's
    activations are alive.
    """
    chunks = [rows[start : start + chunk_size] for start in range(0, len(rows), chunk_size)]
    if not torch.is_grad_enabled():
        return loss(torch.cat([embed(chunk) for chunk in chunks]))
    states: list[_ForwardState] = []
    vectors = []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_ForwardState())
            vectors.append(embed(chunk))
    leaf = torch.cat(vectors).detach().requires_grad_()
    value = loss(leaf)
    (vector_grads,) = torch.autograd.grad(value, leaf)
    result = value.detach().requires_grad_()

    def replay(grad_output: torch.Tensor) -> torch.Tensor:
        for chunk, state, grads in zip(
            chunks, states, torch.split(vector_grads, [len(c) for c in chunks]), strict=True
        ):
            with state.replayed(), torch.enable_grad():
                again = embed(chunk)
                torch.autograd.backward(again, grads.to(again.dtype) * grad_output)
        return grad_output

    result.register_hook(replay)
    return result
