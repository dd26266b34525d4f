"""Half-precision encoding: the requested dtype is the one the weights and the forward use,
whatever head the checkpoint was saved with, and the vectors stay close to float32's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from llmvec import Encoder
from llmvec.testing import build_tokenizer, row_cosines

TEXTS = ["a cat sat on the mat", "the stock market fell today", "rain again", "x"]


@pytest.fixture(scope="module")
def causal_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama saved as a causal LM (float32) whose config still names the GGUF
    quantization it was converted from, as a naive GGUF-to-safetensors conversion leaves it."""
    path = tmp_path_factory.mktemp("causal-lm")
    tokenizer = build_tokenizer(True)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    saved = json.loads((path / "config.json").read_text())
    saved["quantization_config"] = {"quant_method": "gguf", "dequantize": False, "gguf_file": "x"}
    (path / "config.json").write_text(json.dumps(saved))
    return path


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", torch.bfloat16])
def test_weights_take_the_requested_dtype(causal_lm_folder: Path, dtype: str | torch.dtype) -> None:
    # transformers 5.x keeps such a checkpoint in float32 whatever dtype= says; the backend
    # must not trust from_pretrained's dtype.
    encoder = Encoder(str(causal_lm_folder), device="cpu", dtype=dtype)
    expected = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert {p.dtype for p in encoder.backend.model.parameters()} == {expected}
    assert encoder.backend.dtype == expected


@pytest.mark.parametrize("template", [None, "prompteol", "ke"])
def test_bfloat16_vectors_are_float32_and_close(
    causal_lm_folder: Path, template: str | None
) -> None:
    full = Encoder(str(causal_lm_folder), device="cpu", dtype="float32", template=template)
    half = Encoder(str(causal_lm_folder), device="cpu", dtype="bfloat16", template=template)
    reference, vectors = full.encode(TEXTS), half.encode(TEXTS)
    assert vectors.dtype == reference.dtype == "float32"
    assert row_cosines(vectors, reference).min() > 0.99
    # Not equal either: the forward really ran in bfloat16.
    assert not (vectors == reference).all()
