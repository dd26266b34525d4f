"""Single-position pooling runs the last computed block's MLP for the pooled tokens alone, with
the same vectors as a plain reference, and falls back where a block cannot be narrowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from llmvec import Encoder
from llmvec.testing import TINY_ARCHITECTURES, row_cosines, unpadded_states

TEXTS = ["A man is playing a guitar.", "Paris", "", "a much longer sentence " * 6]


def _mlp_rows(encoder: Encoder, layer: int) -> list[int]:
    """Tokens per input that block ``layer - 1``'s MLP saw, one entry per call, once the
    shared prefix is cached and the narrowing probe has run (both run every token)."""
    encoder.encode(TEXTS)
    seen: list[int] = []
    mlp = encoder.backend.layers[layer - 1].mlp  # type: ignore[union-attr]
    # A forward hook (after llmvec's pre-hook, whatever the registration order) sees the output.
    handle = mlp.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    try:
        encoder.encode(TEXTS)
    finally:
        handle.remove()
    return seen


def _reference(path: Path, encoder: Encoder) -> torch.Tensor:
    """One text at a time, every hidden state, the pooled token read by hand."""
    return torch.stack([states[-1] for states in unpadded_states(path, encoder, TEXTS)])


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize(("template", "layer"), [("ke", None), (None, -1), (None, 2)])
def test_last_token_narrows_the_last_block(
    tiny_models: dict[str, Path], arch: str, template: str | None, layer: int | None
) -> None:
    path = tiny_models[arch]
    encoder = Encoder(str(path), pooling="last_token", template=template, layer=layer)
    assert set(_mlp_rows(encoder, encoder.recipe.layer)) == {1}
    reference = _reference(path, encoder).numpy()
    assert row_cosines(encoder.encode(TEXTS), reference).min() > 0.9999


def test_mean_pooling_is_not_narrowed(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean")
    assert max(_mlp_rows(encoder, encoder.recipe.layer)) > 1


class _WholeSequenceMLP(nn.Module):
    """An MLP that only works on whole sequences (zero for a lone token): narrowing would
    change the result, batching would not."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.inner(hidden)
        return output if hidden.shape[1] > 1 else torch.zeros_like(output)


def test_a_block_that_cannot_be_narrowed_falls_back(tiny_llama: Path) -> None:
    texts = [text for text in TEXTS if text]  # every input has several tokens
    encoder = Encoder(str(tiny_llama), pooling="last_token", prefix_caching=False)
    last = encoder.backend.layers[-1]  # type: ignore[union-attr]
    last.mlp = _WholeSequenceMLP(last.mlp)
    vectors = encoder.encode(texts)
    assert encoder.backend._narrowing == {encoder.recipe.layer: False}  # type: ignore[union-attr]
    # The full computation, one text at a time, gives the same vectors.
    alone = [encoder.encode([text])[0] for text in texts]
    assert row_cosines(vectors, np.stack(alone)).min() > 0.9999
