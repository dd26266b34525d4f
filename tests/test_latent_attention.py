"""NV-Embed latent-attention pooling: against a plain re-derivation of its math, masking, the
encoder integration, and saving/loading heads (ours and NV-Embed's key layout)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from llmvec import Encoder
from llmvec.encoding.latent_attention import LatentAttentionPooling

TEXTS = ["A man is playing a guitar.", "Paris", "Stock markets fell 3% on Monday, 2024-01-05."]
INSTRUCTION = "Given a question, retrieve passages that answer the question"


def _layer_norm(x: torch.Tensor, state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + 1e-5) * state[f"{name}.weight"] + state[f"{name}.bias"]


def _reference(
    state: dict[str, torch.Tensor], heads: int, hidden: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """NV-Embed's latent attention written out with explicit matrix products, one row at a time."""
    block = "cross_attend_blocks"
    latents = _layer_norm(state["latents"], state, f"{block}.0.norm_context")
    keys, values = (latents @ state[f"{block}.0.fn.to_kv.weight"].T).chunk(2, dim=-1)
    rows = []
    for states, keep in zip(hidden, mask, strict=True):
        x = states[keep]
        queries = _layer_norm(x, state, f"{block}.0.norm") @ state[f"{block}.0.fn.to_q.weight"].T
        width = queries.shape[-1] // heads
        outputs = []
        for h in range(heads):
            part = slice(h * width, (h + 1) * width)
            scores = queries[:, part] @ keys[:, part].T / math.sqrt(width)
            outputs.append(torch.softmax(scores, dim=-1) @ values[:, part])
        x = x + torch.cat(outputs, dim=-1) @ state[f"{block}.0.fn.to_out.weight"].T
        inner = _layer_norm(x, state, f"{block}.1.norm") @ state[f"{block}.1.fn.net.0.weight"].T
        inner = inner + state[f"{block}.1.fn.net.0.bias"]
        gated_values, gates = inner.chunk(2, dim=-1)
        gated = gated_values * torch.nn.functional.gelu(gates)
        x = x + gated @ state[f"{block}.1.fn.net.2.weight"].T + state[f"{block}.1.fn.net.2.bias"]
        rows.append(x.mean(dim=0))
    return torch.stack(rows)


def _inputs(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 7, dim, generator=generator) * 2
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 1:] = True  # a skipped BOS
    mask[1, 3:5] = True  # instruction before, padding after
    mask[2, :2] = True  # right padding
    return hidden, mask


def test_defaults_and_shapes() -> None:
    head = LatentAttentionPooling.random(64)
    assert head.latents.shape == (512, 64)
    assert head.num_heads == 8
    hidden, mask = _inputs(64)
    assert head(hidden, mask).shape == (3, 64)
    assert head.token_states(hidden).shape == (3, 7, 64)
    small = LatentAttentionPooling.random(64, num_latents=16, num_heads=2, head_dim=64)
    assert small.latents.shape == (16, 64)
    assert small.cross_attend_blocks[0].fn.to_q.weight.shape == (128, 64)


@pytest.mark.parametrize(("heads", "head_dim"), [(8, None), (2, 64)])
def test_matches_the_plain_reference(heads: int, head_dim: int | None) -> None:
    head = LatentAttentionPooling.random(
        64, seed=5, num_latents=32, num_heads=heads, head_dim=head_dim
    )
    hidden, mask = _inputs(64)
    with torch.no_grad():
        expected = _reference(head.state_dict(), heads, hidden, mask)
        torch.testing.assert_close(head(hidden, mask), expected, atol=1e-5, rtol=1e-4)


def test_masked_positions_do_not_affect_the_vector() -> None:
    head = LatentAttentionPooling.random(64)
    hidden, mask = _inputs(64)
    garbage = hidden.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), 64) * 100
    garbage[1, 6] = float("nan")  # a NaN in a padded position must not leak either
    with torch.no_grad():
        torch.testing.assert_close(head(garbage, mask), head(hidden, mask), atol=0, rtol=0)
        alone = head(hidden[1:2, 3:5], torch.ones(1, 2, dtype=torch.bool))
        torch.testing.assert_close(head(hidden, mask)[1:2], alone, atol=1e-6, rtol=1e-5)


def test_random_heads_are_reproducible_and_seeded() -> None:
    state = torch.random.get_rng_state()
    first = LatentAttentionPooling.random(64, seed=0).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    again = LatentAttentionPooling.random(64, seed=0).state_dict()
    other = LatentAttentionPooling.random(64, seed=1).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["latents"], other["latents"])


@pytest.mark.parametrize("bidirectional", [False, True])  # True: NV-Embed's full recipe
def test_encoder_pools_text_tokens_only_and_warns_when_untrained(
    tiny_llama: Path, caplog: pytest.LogCaptureFixture, bidirectional: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmvec.encoding.latent_attention"):
        encoder = Encoder(
            str(tiny_llama),
            pooling="latent_attention",
            query_instruction=INSTRUCTION,
            instruction_format="nv-embed",
            bidirectional=bidirectional,
        )
    assert "untrained, randomly initialised head" in caplog.text
    assert dict(encoder.spec.extra)["latent_attention"] == "random-seed-0"
    head = encoder._latent_attention()
    vectors = encoder.encode_queries(TEXTS, normalize=False)
    for text, vector in zip(TEXTS, vectors, strict=True):
        (item,) = encoder.tokenize(text, instruction=INSTRUCTION)
        ids = torch.tensor([item.ids])
        with torch.inference_mode():
            states = encoder.backend.hidden_states(ids, torch.ones_like(ids), 3)
            expected = head.token_states(states)[0, item.pool_start :].mean(dim=0)
        np.testing.assert_allclose(vector, expected.numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_encoder_batch_invariance(tiny_models: dict[str, Path], side: str) -> None:
    encoder = Encoder(str(tiny_models["qwen2"]), pooling="latent_attention", padding_side=side)
    batched = encoder.encode(TEXTS)
    alone = np.concatenate([encoder.encode(text) for text in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=2e-5)


def test_a_saved_head_reproduces_its_vectors(tiny_llama: Path, tmp_path: Path) -> None:
    trained = LatentAttentionPooling.random(64, seed=7, num_latents=64, num_heads=4)
    path = tmp_path / "head.safetensors"
    trained.save(path)
    loaded = LatentAttentionPooling.load(path, dim=64)
    assert loaded.num_heads == 4 and loaded.latents.shape == (64, 64)
    hidden, mask = _inputs(64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(hidden, mask), trained(hidden, mask), atol=0, rtol=0)
    first = Encoder(str(tiny_llama), pooling="latent_attention", latent_attention_weights=path)
    second = Encoder(str(tiny_llama), pooling="latent_attention", latent_attention_weights=path)
    untrained = Encoder(str(tiny_llama), pooling="latent_attention")
    np.testing.assert_array_equal(first.encode(TEXTS), second.encode(TEXTS))
    assert np.sum(first.encode(TEXTS) * untrained.encode(TEXTS), axis=1).max() < 0.999
    assert first.spec == second.spec
    assert first.spec.differences(untrained.spec) == ["extra"]
    assert dict(first.spec.extra)["latent_attention"].startswith("sha256:")


def test_loads_nv_embed_key_layout(tmp_path: Path) -> None:
    """NV-Embed stores the head under ``latent_attention_model.`` with head_dim == hidden size
    and no metadata; it loads with 8 heads."""
    source = LatentAttentionPooling.random(32, seed=2, num_latents=16, num_heads=8, head_dim=32)
    path = tmp_path / "nv_embed.safetensors"
    save_file(
        {f"latent_attention_model.{key}": value for key, value in source.state_dict().items()},
        str(path),
    )
    loaded = LatentAttentionPooling.load(path)
    assert loaded.num_heads == 8
    hidden, mask = _inputs(32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(hidden, mask), source(hidden, mask), atol=0, rtol=0)


def test_bad_weights_are_clear_errors(tiny_llama: Path, tmp_path: Path) -> None:
    path = tmp_path / "head.safetensors"
    LatentAttentionPooling.random(32, num_latents=8).save(path)
    with pytest.raises(ValueError, match="are for dimension 32, but the model's hidden size is 64"):
        Encoder(str(tiny_llama), pooling="latent_attention", latent_attention_weights=path)
    with pytest.raises(ValueError, match=r"must be a \.safetensors file"):
        LatentAttentionPooling.load(tmp_path / "head.bin")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        LatentAttentionPooling.load(tmp_path / "missing.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="holds no 'latents' tensor"):
        LatentAttentionPooling.load(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got 0"):
        LatentAttentionPooling(64, num_heads=0)


def test_a_spec_brings_its_trained_head_back(tiny_llama: Path, tmp_path: Path) -> None:
    path = tmp_path / "head.safetensors"
    LatentAttentionPooling.random(64, seed=7, num_latents=64, num_heads=4).save(path)
    encoder = Encoder(str(tiny_llama), pooling="latent_attention", latent_attention_weights=path)
    restored = Encoder.from_spec(encoder.spec)
    encoder.spec.check_compatible(restored.spec)
    np.testing.assert_allclose(restored.encode(["a text"]), encoder.encode(["a text"]), atol=1e-6)
