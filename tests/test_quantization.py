"""bitsandbytes 8-bit and 4-bit (NF4), and torch's dynamic int8 on the CPU, through the
transformers backend.

These run wherever bitsandbytes can quantize on the current device: its CPU backend (0.48+) or
CUDA. Elsewhere they are skipped, naming what failed. Argument checks run everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from llmvec import Encoder

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "Scientists found that proteins fold; stock markets fell 3% on Monday.",
    "Query: what is the capital of France?",
]


def _bitsandbytes_problem() -> str | None:
    """Why bitsandbytes cannot quantize here, or ``None`` when it can (4-bit and 8-bit)."""
    try:
        import bitsandbytes.functional as bnb_functional
    except Exception as error:  # ImportError, or a broken native library
        return f"bitsandbytes is not importable: {error}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        weights = torch.randn(64, 64, device=device)
        packed, state = bnb_functional.quantize_4bit(weights, quant_type="nf4")
        restored = bnb_functional.dequantize_4bit(packed, state)
        codes, scales, _ = bnb_functional.int8_vectorwise_quant(weights.half())
    except Exception as error:
        return f"bitsandbytes cannot quantize on {device}: {type(error).__name__}: {error}"
    if restored.shape != weights.shape or codes.dtype != torch.int8 or scales.numel() != 64:
        return f"bitsandbytes on {device} returned unexpected shapes"
    return None


PROBLEM = _bitsandbytes_problem()
needs_bitsandbytes = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


@pytest.fixture(scope="module")
def full_precision(tiny_llama: Path) -> np.ndarray:
    return Encoder(str(tiny_llama), pooling="mean").encode(TEXTS)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _quiet_bitsandbytes() -> None:
    # One warning per 8-bit matmul when inputs are float32.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


@needs_bitsandbytes
@pytest.mark.parametrize(
    ("mode", "layer_type", "min_cosine"),
    [("8bit", "Linear8bitLt", 0.995), ("4bit", "Linear4bit", 0.95)],
)
def test_quantized_vectors_stay_close_to_full_precision(
    tiny_llama: Path, full_precision: np.ndarray, mode: str, layer_type: str, min_cosine: float
) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean", quantization=mode)
    assert type(encoder.backend.layers[0].self_attn.q_proj).__name__ == layer_type
    vectors = encoder.encode(TEXTS)
    assert np.isfinite(vectors).all()
    cosine = np.sum(vectors * full_precision, axis=1)
    assert cosine.min() > min_cosine
    assert cosine.min() < 0.99999  # quantization really happened
    batched_alone = np.concatenate([encoder.encode(text) for text in TEXTS])
    np.testing.assert_allclose(vectors, batched_alone, atol=1e-3)


@needs_bitsandbytes
def test_a_user_quantization_config_is_passed_through(tiny_llama: Path) -> None:
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4")
    encoder = Encoder(str(tiny_llama), quantization_config=config)
    state = encoder.backend.layers[0].self_attn.q_proj.weight.quant_state
    assert state.quant_type == "fp4"
    nf4 = Encoder(str(tiny_llama), quantization="4bit")
    assert nf4.backend.layers[0].self_attn.q_proj.weight.quant_state.quant_type == "nf4"
    assert not np.array_equal(encoder.encode(TEXTS), nf4.encode(TEXTS))


@needs_bitsandbytes
def test_quantized_model_runs_bidirectional(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), quantization="8bit", bidirectional=True)
    assert np.isfinite(encoder.encode(TEXTS)).all()


def test_quantization_arguments_are_checked(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown quantization '3bit'; allowed: \['4bit', '8bit', 'int8'\]"
    ):
        Encoder(str(tiny_llama), quantization="3bit")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"cannot be combined with the GGUF file 'model\.gguf'"):
        Encoder(str(gguf), quantization="4bit")


# ---------------------------------------------------------------------- int8 on the CPU
def _reference_int8(weights: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """A plain dynamic int8 matmul: weights per output channel, inputs per tensor (asymmetric,
    uint8 range), products in integers, then scaled back."""
    w_scale = weights.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
    w_codes = torch.round(weights / w_scale).clamp(-128, 127)
    low, high = min(inputs.min().item(), 0.0), max(inputs.max().item(), 0.0)
    x_scale = max(high - low, 1e-8) / 255
    zero = round(-low / x_scale)
    x_codes = torch.round(inputs / x_scale + zero).clamp(0, 255) - zero
    return (x_codes @ w_codes.T) * x_scale * w_scale.T


def test_int8_linear_layers_match_a_plain_int8_matmul() -> None:
    from llmvec.backends.int8 import quantize_linear_layers

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False))
    weights = model[0].weight.detach().clone()
    quantize_linear_layers(model, torch.device("cpu"), torch.float32)
    inputs = torch.randn(5, 64)
    expected = _reference_int8(weights, inputs)
    assert type(model[0]).__name__ == "Linear" and "quantized" in type(model[0]).__module__
    torch.testing.assert_close(model(inputs), expected, rtol=0.02, atol=0.02)


def test_int8_vectors_stay_close_and_the_spec_says_so(
    tiny_llama: Path, full_precision: np.ndarray
) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean", quantization="int8")
    vectors = encoder.encode(TEXTS)
    assert np.sum(vectors * full_precision, axis=1).min() > 0.99
    assert ("quantization", "int8") in encoder.spec.extra
    # An index's spec rebuilds the same int8 encoder, and a float32 one is refused.
    again = Encoder.from_spec(encoder.spec)
    np.testing.assert_allclose(again.encode(TEXTS), vectors, atol=1e-6)
    differences = encoder.spec.differences(Encoder(str(tiny_llama), pooling="mean").spec)
    assert any("extra" in d or "quantization" in d for d in differences)


def test_int8_runs_on_the_cpu_in_float32_only(tiny_llama: Path) -> None:
    with pytest.raises(ValueError, match="quantizes float32 weights"):
        Encoder(str(tiny_llama), quantization="int8", dtype="bfloat16")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="runs on the CPU"):
            Encoder(str(tiny_llama), quantization="int8", device="cuda")


def _last_hidden(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).last_hidden_state


@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen2", "qwen3"])
def test_smoothing_folds_into_the_weights_and_keeps_the_float_function(
    tiny_models: dict[str, Path], architecture: str
) -> None:
    from llmvec.backends.int8 import (
        CALIBRATION_TEXTS,
        SMOOTHING_ALPHA,
        _llama_blocks,
        activation_ranges,
        smooth_blocks,
    )

    backend = Encoder(str(tiny_models[architecture]), pooling="mean").backend
    model, tokenizer = backend.model, backend.tokenizer  # type: ignore[union-attr]
    ids = tokenizer("Smoothing moves outliers into the weights.", return_tensors="pt")["input_ids"]
    expected = _last_hidden(model, ids)
    blocks = list(_llama_blocks(model))
    first = blocks[0]
    norm_before = first.attention_norm.weight.detach().clone()
    # A plain SmoothQuant reference for the first block's q/k/v input, from hooks of its own.
    peaks: list[torch.Tensor] = []
    hook = first.q.register_forward_pre_hook(
        lambda _, args: peaks.append(args[0].abs().reshape(-1, args[0].shape[-1]).amax(0))
    )
    with torch.no_grad():
        for text in CALIBRATION_TEXTS:
            model(input_ids=tokenizer(text, return_tensors="pt")["input_ids"])
    hook.remove()
    activation = torch.stack(peaks).amax(0)
    weight = torch.cat([first.q.weight, first.k.weight, first.v.weight]).abs().amax(0)
    factors = activation**SMOOTHING_ALPHA / weight ** (1 - SMOOTHING_ALPHA)

    smooth_blocks(blocks, activation_ranges(model, tokenizer), SMOOTHING_ALPHA)
    torch.testing.assert_close(first.attention_norm.weight, norm_before / factors)
    with torch.no_grad():
        torch.testing.assert_close(_last_hidden(model, ids), expected, rtol=1e-4, atol=1e-4)


def _int8_error(model_dir: Path, smoothed: bool) -> float:
    """1 - cosine of int8 to float32 last hidden states, with an outlier channel planted in
    every block's q/k/v input (the float function unchanged)."""
    from llmvec.backends.int8 import _llama_blocks, quantize_linear_layers

    backend = Encoder(str(model_dir), pooling="mean").backend
    model, tokenizer = backend.model, backend.tokenizer  # type: ignore[union-attr]
    with torch.no_grad():
        for block in _llama_blocks(model):
            block.attention_norm.weight[3] *= 300.0
            for projection in (block.q, block.k, block.v):
                projection.weight[:, 3] /= 300.0
        ids = tokenizer(TEXTS[2], return_tensors="pt")["input_ids"]
        expected = _last_hidden(model, ids)
        quantize_linear_layers(
            model, torch.device("cpu"), torch.float32, tokenizer if smoothed else None
        )
        got = _last_hidden(model, ids)
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    return float(1 - cosine.min())


def test_smoothing_keeps_an_outlier_channel_out_of_the_int8_error(tiny_llama: Path) -> None:
    plain, smoothed = _int8_error(tiny_llama, False), _int8_error(tiny_llama, True)
    assert smoothed < plain / 3, (plain, smoothed)


def test_int8_keeps_the_down_projections_in_float32(tiny_llama: Path) -> None:
    model = Encoder(str(tiny_llama), quantization="int8").backend.model  # type: ignore[union-attr]
    kinds = {
        name.rsplit(".", 1)[-1]: type(module).__module__
        for name, module in model.named_modules()
        if name.endswith("_proj")
    }
    assert kinds.pop("down_proj") == "torch.nn.modules.linear"
    assert all("quantized" in kind for kind in kinds.values()), kinds
