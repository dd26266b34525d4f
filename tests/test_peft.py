"""LLM2Vec-style checkpoints: a base model plus PEFT LoRA adapters, merged, bidirectional, mean
over non-instruction tokens. Adapters are made here on a tiny Llama and checked against a merge
written out by hand (W + B @ A * alpha / r)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from llmvec import Encoder

TEXTS = ["A man is playing a guitar.", "Paris", "Stock markets fell 3% on Monday."]
INSTRUCTION = "Given a question, retrieve passages that answer the question"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _make_adapter(base: Path, path: Path, seed: int, rank: int, alpha: int) -> Path:
    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def adapters(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [
        _make_adapter(tiny_llama, root / "mntp", seed=1, rank=4, alpha=8),
        _make_adapter(tiny_llama, root / "supervised", seed=2, rank=2, alpha=16),
    ]


def _manually_merged(base: Path, adapters: list[Path]) -> torch.nn.Module:
    model = AutoModel.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    weights = dict(model.named_parameters())
    for adapter in adapters:
        config = json.loads((adapter / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        state = load_file(adapter / "adapter_model.safetensors")
        a_keys = [key for key in state if key.endswith(".lora_A.weight")]
        assert len(a_keys) == len(TARGETS) * model.config.num_hidden_layers
        for a_key in a_keys:
            module = a_key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b_key = a_key.replace(".lora_A.", ".lora_B.")
            with torch.no_grad():
                weights[f"{module}.weight"] += scale * state[b_key] @ state[a_key]
    return model.eval()


def _reference_vectors(
    encoder: Encoder, model: torch.nn.Module, instruction: str | None
) -> np.ndarray:
    """Full attention (explicit all-visible 4D mask), mean over the tokens after the instruction."""
    rows = []
    for item in encoder.tokenize(TEXTS, instruction=instruction):
        ids = torch.tensor([item.ids])
        no_mask = torch.zeros((1, 1, len(item.ids), len(item.ids)))
        with torch.inference_mode():
            states = model(ids, attention_mask=no_mask).last_hidden_state[0]
        vector = states[item.pool_start :].mean(dim=0)
        rows.append((vector / vector.norm()).numpy())
    return np.stack(rows)


def test_merged_adapters_match_a_hand_merged_model(tiny_llama: Path, adapters: list[Path]) -> None:
    encoder = Encoder(
        str(tiny_llama),
        adapters=[str(path) for path in adapters],
        bidirectional=True,
        pooling="mean",
        query_instruction=INSTRUCTION,
    )
    reference = _manually_merged(tiny_llama, adapters)
    np.testing.assert_allclose(
        encoder.encode(TEXTS), _reference_vectors(encoder, reference, None), atol=1e-5
    )
    np.testing.assert_allclose(
        encoder.encode_queries(TEXTS),
        _reference_vectors(encoder, reference, INSTRUCTION),
        atol=1e-5,
    )
    # The adapters really changed the model, and the order of merging is the given one.
    plain = Encoder(str(tiny_llama), bidirectional=True, pooling="mean")
    assert np.sum(plain.encode(TEXTS) * encoder.encode(TEXTS), axis=1).max() < 0.999


def test_adapters_are_part_of_the_model_identity(tiny_llama: Path, adapters: list[Path]) -> None:
    plain = Encoder(str(tiny_llama), bidirectional=True)
    one = Encoder(str(tiny_llama), adapters=[str(adapters[0])], bidirectional=True)
    two = Encoder(str(tiny_llama), adapters=adapters, bidirectional=True)  # Paths work too
    revisions = {e.spec.model_revision for e in (plain, one, two)}
    assert len(revisions) == 3
    assert one.spec.differences(two.spec) == ["model_revision"]


def test_an_adapter_saved_on_a_causal_lm_wrapper_loads_the_same(
    tiny_llama: Path, adapters: list[Path], tmp_path: Path
) -> None:
    wrapped = tmp_path / "causal-lm-adapter"
    shutil.copytree(adapters[0], wrapped)
    state = load_file(adapters[0] / "adapter_model.safetensors")
    renamed = {
        key.replace("base_model.model.", "base_model.model.model.", 1): value
        for key, value in state.items()
    }
    save_file(renamed, wrapped / "adapter_model.safetensors")
    direct = Encoder(str(tiny_llama), adapters=[str(adapters[0])], bidirectional=True)
    remapped = Encoder(str(tiny_llama), adapters=[str(wrapped)], bidirectional=True)
    np.testing.assert_array_equal(direct.encode(TEXTS), remapped.encode(TEXTS))


def test_an_adapter_for_other_modules_is_rejected(
    tiny_llama: Path, adapters: list[Path], tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign-adapter"
    shutil.copytree(adapters[0], foreign)
    state = load_file(adapters[0] / "adapter_model.safetensors")
    save_file(
        {key.replace("layers.", "blocks.", 1): value for key, value in state.items()},
        foreign / "adapter_model.safetensors",
    )
    with pytest.raises(ValueError, match="does not fit LlamaModel: 42 adapter weights"):
        Encoder(str(tiny_llama), adapters=[str(foreign)])


def test_bad_adapter_arguments(tiny_llama: Path, adapters: list[Path], tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="adapters must be a list"):
        Encoder(str(tiny_llama), adapters=str(adapters[0]))
    pickled = tmp_path / "bin-adapter"
    pickled.mkdir()
    shutil.copy(adapters[0] / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"lacks \['adapter_model.safetensors'\]"):
        Encoder(str(tiny_llama), adapters=[str(pickled)])
    with pytest.raises(ValueError, match="cannot be merged into a bitsandbytes-quantized model"):
        Encoder(str(tiny_llama), adapters=[str(adapters[0])], quantization="8bit")


def test_a_spec_brings_its_adapters_back(
    tiny_llama: Path, adapters: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index built with adapters is searched from its spec alone (``llmvec search``), from
    any working directory; adapters that moved are named again and still recognised."""
    monkeypatch.chdir(adapters[0].parent)
    encoder = Encoder(str(tiny_llama), adapters=[path.name for path in adapters])  # relative
    spec = encoder.spec
    monkeypatch.chdir(tmp_path)
    restored = Encoder.from_spec(spec)
    spec.check_compatible(restored.spec)
    np.testing.assert_allclose(restored.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    moved = [Path(shutil.copytree(path, tmp_path / path.name)) for path in adapters]
    relocated = Encoder.from_spec(spec, adapters=moved)
    spec.check_compatible(relocated.spec)  # same contents, another place
    base = Encoder.from_spec(spec.replace(extra=()))  # the adapters forgotten: refused
    with pytest.raises(ValueError, match="model_revision"):
        spec.check_compatible(base.spec)
