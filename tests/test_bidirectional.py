"""LLM2Vec-style bidirectional attention on every tiny decoder architecture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from llmvec import Encoder
from llmvec.backends.bidirectional import check_bidirectional, sees_later_tokens
from llmvec.testing import TINY_ARCHITECTURES

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "The essence of a sentence is often captured by its main subjects and actions while",
    "Scientists found that proteins fold; stock markets fell 3% on Monday.",
]


@pytest.fixture(scope="module")
def encoders(tiny_models: dict[str, Path]) -> dict[tuple[str, bool, str], Encoder]:
    return {
        (arch, bidirectional, side): Encoder(
            str(tiny_models[arch]), bidirectional=bidirectional, padding_side=side
        )
        for arch in TINY_ARCHITECTURES
        for bidirectional in (True, False)
        for side in ("left", "right")
    }


def _states(encoder: Encoder, ids: list[int], layer: int) -> torch.Tensor:
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        return encoder.backend.hidden_states(input_ids, torch.ones_like(input_ids), layer)[0]


def _reference_states(path: Path, ids: list[int], layer: int) -> torch.Tensor:
    """Hidden states with an explicit all-visible 4D additive mask and eager attention: full
    attention without any causal part, built independently of llmvec's mechanism."""
    model = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    input_ids = torch.tensor([ids])
    no_mask = torch.zeros((1, 1, len(ids), len(ids)))
    with torch.inference_mode():
        output = model(input_ids, attention_mask=no_mask, output_hidden_states=True)
    return output.hidden_states[layer][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_earlier_tokens_see_a_later_token_only_when_bidirectional(
    encoders: dict[tuple[str, bool, str], Encoder], arch: str
) -> None:
    ids = encoders[(arch, True, "right")].tokenize("A man is playing a guitar.")[0].ids
    changed = [*ids[:-1], ids[-2]]
    for bidirectional in (True, False):
        encoder = encoders[(arch, bidirectional, "right")]
        for layer in (1, encoder.backend.num_layers):
            before, after = _states(encoder, ids, layer), _states(encoder, changed, layer)
            earlier_changed = not torch.allclose(before[:-1], after[:-1], atol=1e-6)
            assert earlier_changed is bidirectional, (arch, bidirectional, layer)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_bidirectional_states_match_a_full_attention_reference(
    encoders: dict[tuple[str, bool, str], Encoder], tiny_models: dict[str, Path], arch: str
) -> None:
    encoder = encoders[(arch, True, "right")]
    ids = encoder.tokenize("Paris is the capital and largest city of France.")[0].ids
    for layer in (1, encoder.backend.num_layers):
        expected = _reference_states(tiny_models[arch], ids, layer)
        torch.testing.assert_close(_states(encoder, ids, layer), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_bidirectional_mean_vectors_match_the_reference(
    encoders: dict[tuple[str, bool, str], Encoder], tiny_models: dict[str, Path], arch: str
) -> None:
    encoder = encoders[(arch, True, "right")]
    vectors = encoder.encode(TEXTS, pooling_method="mean", normalize=False)
    n = encoder.backend.num_layers
    for text, vector in zip(TEXTS, vectors, strict=True):
        (item,) = encoder.tokenize(text)
        states = _reference_states(tiny_models[arch], item.ids, n)
        expected = states[item.pool_start :].mean(dim=0).numpy()
        np.testing.assert_allclose(vector, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("method", ["mean", "last_token", "weighted_mean"])
def test_bidirectional_batch_invariance(
    encoders: dict[tuple[str, bool, str], Encoder], arch: str, side: str, method: str
) -> None:
    encoder = encoders[(arch, True, side)]
    batched = encoder.encode(TEXTS, pooling_method=method)
    alone = np.concatenate([encoder.encode(text, pooling_method=method) for text in TEXTS])
    assert np.isfinite(batched).all()
    np.testing.assert_allclose(batched, alone, atol=2e-5)
    other_side = "left" if side == "right" else "right"
    np.testing.assert_allclose(
        batched, encoders[(arch, True, other_side)].encode(TEXTS, pooling_method=method), atol=2e-5
    )


def test_bidirectional_changes_the_vectors_and_the_spec(
    encoders: dict[tuple[str, bool, str], Encoder],
) -> None:
    bidirectional = encoders[("llama", True, "right")]
    causal = encoders[("llama", False, "right")]
    assert bidirectional.spec.bidirectional and not causal.spec.bidirectional
    assert bidirectional.spec.differences(causal.spec) == ["bidirectional"]
    cosine = np.sum(bidirectional.encode(TEXTS) * causal.encode(TEXTS), axis=1)
    assert cosine.max() < 0.999


def test_the_probe_rejects_a_causal_model_and_accepts_a_bidirectional_one() -> None:
    def causal(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(ids.float(), dim=1)[..., None]

    def bidirectional(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return ids.float().sum(dim=1, keepdim=True).expand_as(ids)[..., None]

    cpu = torch.device("cpu")
    assert not sees_later_tokens(causal, 100, cpu)
    assert sees_later_tokens(bidirectional, 100, cpu)
    with pytest.raises(ValueError, match="bidirectional=True had no effect on 'toy'"):
        check_bidirectional(causal, 100, cpu, "toy")
    check_bidirectional(bidirectional, 100, cpu, "toy")


@pytest.mark.slow
def test_bidirectional_is_a_no_op_on_an_encoder_model(minilm: Encoder) -> None:
    bidirectional = Encoder("all-minilm-l6-v2", pooling="mean", bidirectional=True)
    np.testing.assert_allclose(bidirectional.encode(TEXTS), minilm.encode(TEXTS), atol=1e-6)
