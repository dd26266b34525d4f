"""Real packaged models, offline: SmolLM2-135M and Gemma 3 270M (GGUF), all-MiniLM-L6-v2."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from llmvec import Encoder
from llmvec.encoding.templates import instruction_prefix
from llmvec.models import resolve_model
from llmvec.testing import row_cosines

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion on a cutting board.",
    "The stock market fell sharply on Monday.",
    "Two dogs run through the snow.",
    "Hi",
]


def test_runs_offline() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_smollm2_loads_from_gguf_and_encodes(smollm2: Encoder) -> None:
    location = resolve_model("smollm2")
    assert location.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert type(smollm2.backend.model).__name__ == "LlamaModel"  # type: ignore[attr-defined]
    vectors = smollm2.encode(SENTENCES)
    assert vectors.shape == (5, 576) and np.isfinite(vectors).all()
    similarity = vectors @ vectors.T
    # Related sentences are closer than unrelated ones.
    assert similarity[0, 1] > similarity[0, 2] or similarity[0, 3] > similarity[0, 2]


def test_gemma3_assembles_from_its_parts_and_encodes(gemma3: Encoder) -> None:
    location = resolve_model("gemma3-270m")
    assert location.gguf_file == "gemma-3-270m-q4_k_m.gguf"
    assert type(gemma3.backend.model).__name__.startswith("Gemma3")  # type: ignore[attr-defined]
    vectors = gemma3.encode(SENTENCES)
    assert vectors.shape == (5, 640) and np.isfinite(vectors).all()
    assert gemma3.spec.model == "gemma3-270m" and gemma3.spec.model_revision is not None


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
@pytest.mark.parametrize(("template", "layer"), [("prompteol", -1), ("pcoteol", -2), ("ke", -2)])
def test_templates_match_plain_paper_recipe(
    request: pytest.FixtureRequest, model: str, template: str, layer: int
) -> None:
    """The paper recipe written out plainly: exact string, tokenizer defaults, left padding,
    all hidden states, the paper's layer, last token."""
    from llmvec.encoding.templates import TEMPLATES

    encoder: Encoder = request.getfixturevalue(model)
    tokenizer = encoder.backend.tokenizer
    prompts = [TEMPLATES[template].replace("{text}", s) for s in SENTENCES]
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # some transformers versions read no pad token from GGUF
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    tokenizer.padding_side = "right"
    positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = encoder.backend.model(  # type: ignore[attr-defined]
            **batch, position_ids=positions, output_hidden_states=True
        )
    reference = out.hidden_states[layer][:, -1].numpy()
    got = encoder.encode(SENTENCES, prompt_template=template)
    assert row_cosines(got, reference).min() > 0.9999


def test_minilm_matches_sentence_transformers(minilm: Encoder) -> None:
    from sentence_transformers import SentenceTransformer

    location = resolve_model("all-minilm-l6-v2")
    model = SentenceTransformer(location.name_or_path, device="cpu")
    expected = model.encode(SENTENCES, normalize_embeddings=True)
    got = minilm.encode(SENTENCES)
    assert got.shape == (5, 384)
    assert row_cosines(got, expected).min() > 0.9999


def test_minilm_is_an_encoder_model(minilm: Encoder) -> None:
    assert minilm.backend.causal is False
    assert minilm.backend.pool_prefix_specials is True
    (item,) = minilm.tokenize("hello")
    tokenizer = minilm.backend.tokenizer
    assert item.ids[0] == tokenizer.cls_token_id and item.ids[-1] == tokenizer.sep_token_id
    assert item.pool_start == 0  # BERT-style models pool CLS and SEP, as they were trained


@pytest.mark.slow
def test_gguf_loads_from_its_dense_copy_with_the_files_weights_and_tokens(
    smollm2: Encoder,
) -> None:
    """The backend reads the dense copy written once (`gguf_as_folder`), not the GGUF file:
    the same token ids and the same float32 weights as transformers' de-quantizing load."""
    from transformers import AutoModel, AutoTokenizer

    from llmvec.models import cache_dir, gguf_dense_kwargs

    location = resolve_model("smollm2")
    assert location.gguf_file is not None
    model = smollm2.backend.model  # type: ignore[attr-defined]
    assert Path(model.config._name_or_path).parent == cache_dir()
    tokenizer = AutoTokenizer.from_pretrained(location.name_or_path, gguf_file=location.gguf_file)
    texts = [*SENTENCES, "naïve café 日本語 😀", "  spaces\tand\nlines  "]
    for text in texts:
        assert smollm2.backend.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    reference = AutoModel.from_pretrained(
        location.name_or_path, dtype=torch.float32, **gguf_dense_kwargs(location.gguf_file)
    ).state_dict()
    weights = model.state_dict()
    assert set(weights) <= set(reference)
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.slow
def test_a_gguf_conversion_parses_the_file_once_and_keeps_its_weights_and_tokens(
    smollm2: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers parses a GGUF file four times in one conversion (config, weights, the
    tokenizer twice); `gguf_as_folder` shares one reader, and writes what the session's copy
    holds (itself compared with transformers' own load above)."""
    import gguf
    from gguf.gguf_reader import GGUFReader
    from transformers import AutoModel, AutoTokenizer

    from llmvec.models import gguf_as_folder

    parsed: list[object] = []
    parse = GGUFReader.__init__

    def counted(self: GGUFReader, *args: object, **kwargs: object) -> None:
        parsed.append(args[0])
        parse(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(GGUFReader, "__init__", counted)
    folder = gguf_as_folder(resolve_model("smollm2"), cache=tmp_path)
    assert len(parsed) == 1
    assert gguf.GGUFReader is GGUFReader  # the shared reader was only for the conversion
    converted = AutoModel.from_pretrained(folder, dtype=torch.float32).state_dict()
    weights = smollm2.backend.model.state_dict()  # type: ignore[attr-defined]
    assert set(weights) <= set(converted)
    for name, tensor in weights.items():
        assert torch.equal(tensor, converted[name]), name
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in [*SENTENCES, "naïve café 日本語 😀"]:
        assert tokenizer(text)["input_ids"] == smollm2.backend.tokenizer(text)["input_ids"]


@pytest.mark.slow
def test_gguf_loads_as_a_dense_model_without_the_packed_weights_warning() -> None:
    # transformers warns that bfloat16 casts every matmul of packed GGUF weights; llmvec asks
    # for the weights unpacked, so the warning would be false (and the layers must be plain).
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        encoder = Encoder("smollm2", dtype="bfloat16")
    finally:
        transformers_logger.removeHandler(handler)
    assert not [r for r in records if "weights packed" in r.getMessage()]
    projection = encoder.backend.model.layers[0].mlp.gate_proj  # type: ignore[union-attr]
    assert type(projection) is torch.nn.Linear
    assert projection.weight.dtype == torch.bfloat16


@pytest.mark.slow
def test_llm2vec_format_matches_its_input_and_embed_mask(smollm2: Encoder) -> None:
    """LLM2Vec feeds ``f"{instruction.strip()} {text}"`` (tokenizer specials added) and pools
    the last ``len(tokenize(text))`` tokens (its embed_mask): written out here from its rule."""
    tokenizer = smollm2.backend.tokenizer
    instruction = "Given a scientific claim, retrieve documents that support or refute the claim"
    prefix = instruction_prefix(instruction, "llm2vec")
    items = smollm2.inputs.build(SENTENCES, prefix=prefix)
    for item, text in zip(items, SENTENCES, strict=True):
        assert item.ids == tokenizer(f"{instruction} {text}")["input_ids"]
        text_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert len(item.ids) - item.pool_start == text_tokens
