"""Encoder.pool: the one step from built inputs to pooled states, shared by encode and training;
with gradients outside inference mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmvec import Encoder

TEXTS = ["Bees dance to share directions.", "Tides follow the Moon.", "A short one."]


@pytest.mark.parametrize(
    "options",
    [{}, {"pooling": "last_token"}, {"template": "ke"}, {"layer": 1}, {"pooling": "eos_token"}],
    ids=["mean", "last_token", "ke", "layer1", "eos_token"],
)
def test_pool_is_the_step_encode_runs(tiny_llama: Path, options: dict[str, object]) -> None:
    encoder = Encoder(str(tiny_llama), prefix_caching=False, **options)  # type: ignore[arg-type]
    with torch.inference_mode():
        pooled = encoder.pool(encoder.tokenize(TEXTS))
    expected = encoder.encode(TEXTS)
    np.testing.assert_allclose(F.normalize(pooled.float(), dim=-1).numpy(), expected, atol=1e-6)


def test_pool_carries_gradients_to_the_weights(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama))
    embeddings = encoder.backend.model.get_input_embeddings().weight  # type: ignore[union-attr]
    embeddings.requires_grad_(True)
    pooled = encoder.pool(encoder.tokenize(TEXTS))
    assert pooled.requires_grad
    pooled.square().sum().backward()
    assert embeddings.grad is not None and float(embeddings.grad.abs().sum()) > 0


def test_pool_trains_the_latent_attention_head(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), pooling="latent_attention")
    pooled = encoder.pool(encoder.tokenize(TEXTS))
    pooled.sum().backward()
    head = encoder._latent_attention()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    assert any(float(p.grad.abs().sum()) > 0 for p in head.parameters() if p.grad is not None)


def test_pool_refuses_no_inputs(tiny_llama: Path) -> None:
    with pytest.raises(ValueError, match="at least one input"):
        Encoder(str(tiny_llama)).pool([])


@pytest.mark.parametrize(
    "options",
    [{"template": "ke"}, {"template": "prompteol", "pooling": "mean"}],
    ids=["ke-last-token", "prompteol-mean"],
)
def test_a_shared_prefix_run_once_gives_the_same_vectors_and_gradients(
    tiny_llama: Path, options: dict[str, object]
) -> None:
    encoder = Encoder(str(tiny_llama), **options)  # type: ignore[arg-type]
    model = encoder.backend.model  # type: ignore[union-attr]
    model.requires_grad_(True)
    inputs = encoder.tokenize(TEXTS)
    results = []
    for share in (False, True):
        model.zero_grad()
        pooled = encoder.pool(inputs, share_prefix=share)
        (pooled * torch.linspace(-1, 1, pooled.shape[-1])).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((pooled.detach(), grads))
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-5)
    assert plain_grads.keys() == shared_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
