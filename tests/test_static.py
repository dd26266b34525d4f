"""The static backend: WordLlama's shipped model against wordllama's own ``embed``, models
extracted from an LLM (with PCA and SIF weights) against plain references, and the encoder's
post-processing (Matryoshka, binary) on static vectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

from llmvec import Encoder
from llmvec.static import extract, zipf_sif_weights

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "Scientists found that proteins fold; stock markets fell 3% on Monday 2024-01-05!",
    "Ünïcödé façade — naïve café, 東京 and emoji 🙂",
    "  leading and trailing spaces  ",
]


@pytest.fixture(scope="module")
def wordllama_reference(tmp_path_factory: pytest.TempPathFactory) -> object:
    """wordllama's own loader, offline: it looks for the shipped tokenizer under
    ``<package>/tokenizer/`` while the file is in ``<package>/tokenizers/``, so a cache folder
    holding a link to the shipped file lets it load without a download."""
    from wordllama import WordLlama

    package = Path(importlib.util.find_spec("wordllama").submodule_search_locations[0])  # type: ignore[union-attr]
    cache = tmp_path_factory.mktemp("wordllama-cache")
    (cache / "tokenizers").mkdir()
    name = "l2_supercat_tokenizer_config.json"
    (cache / "tokenizers" / name).symlink_to(package / "tokenizers" / name)
    return WordLlama.load(cache_dir=cache, disable_download=True)


@pytest.fixture(scope="module")
def wordllama() -> Encoder:
    return Encoder("wordllama", backend="static", normalize=False)


def test_wordllama_matches_its_own_embed(wordllama: Encoder, wordllama_reference: object) -> None:
    expected = wordllama_reference.embed(TEXTS)  # type: ignore[attr-defined]
    vectors = wordllama.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(vectors, expected, atol=1e-6, rtol=1e-5)
    normalized = wordllama.encode(TEXTS, normalize=True)
    reference_normalized = wordllama_reference.embed(TEXTS, norm=True)  # type: ignore[attr-defined]
    assert np.sum(normalized * reference_normalized, axis=1).min() > 0.9999


def test_wordllama_matryoshka_matches_its_truncated_model(
    wordllama_reference: object, tmp_path: Path
) -> None:
    encoder = Encoder("wordllama", backend="static", truncate_dim=64)
    assert encoder.dim == 64 and encoder.spec.truncate_dim == 64
    expected = wordllama_reference.embed(TEXTS, norm=True)[:, :64]  # type: ignore[attr-defined]
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-5)


def test_static_vectors_do_not_depend_on_batch_or_padding_side() -> None:
    right = Encoder("wordllama", backend="static", padding_side="right")
    left = Encoder("wordllama", backend="static", padding_side="left")
    alone = np.concatenate([right.encode(text) for text in TEXTS])
    np.testing.assert_allclose(right.encode(TEXTS), alone, atol=1e-6)
    np.testing.assert_allclose(left.encode(TEXTS), alone, atol=1e-6)


def test_binary_output_packs_the_signs(wordllama: Encoder) -> None:
    if importlib.util.find_spec("llmvec.compress") is None:
        pytest.skip("llmvec.compress is not available yet")
    vectors = wordllama.encode(TEXTS)
    packed = wordllama.encode(TEXTS, precision="ubinary")
    np.testing.assert_array_equal(packed, np.packbits(vectors > 0, axis=-1))


def _reference_static(model_dir: Path, texts: list[str], matrix: np.ndarray) -> np.ndarray:
    """Mean of the codebook rows of each text's own tokens (no special tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return np.stack([matrix[ids].mean(axis=0) for ids in rows])


def test_extracted_model_averages_the_input_embeddings(tiny_llama: Path, tmp_path: Path) -> None:
    folder = extract(str(tiny_llama), tmp_path / "static")
    encoder = Encoder(str(folder), backend="static", normalize=False)
    assert encoder.backend.hidden_size == 64 and encoder.backend.num_layers == 0
    matrix = AutoModel.from_pretrained(tiny_llama).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(
        encoder.encode(TEXTS[:3]), _reference_static(tiny_llama, TEXTS[:3], matrix), atol=1e-6
    )


def test_extracted_model_with_pca(tiny_llama: Path, tmp_path: Path) -> None:
    folder = extract(str(tiny_llama), tmp_path / "pca", dim=16)
    encoder = Encoder(str(folder), backend="static", normalize=False)
    assert encoder.dim == 16
    matrix = AutoModel.from_pretrained(tiny_llama).get_input_embeddings().weight.detach()
    centered = (matrix - matrix.mean(dim=0)).double().numpy()
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    reference = (centered @ components[:16].T).astype(np.float32)
    vectors = encoder.encode(TEXTS[:3])
    expected = _reference_static(tiny_llama, TEXTS[:3], reference)
    # Principal components are defined up to sign: compare every pair's inner product.
    np.testing.assert_allclose(vectors @ vectors.T, expected @ expected.T, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.abs(vectors), np.abs(expected), atol=1e-4)
    again = extract(str(tiny_llama), tmp_path / "pca-again", dim=16)
    normalized = Encoder(str(folder), backend="static").encode(TEXTS)
    np.testing.assert_array_equal(Encoder(str(again), backend="static").encode(TEXTS), normalized)


def test_extracted_model_with_sif_weights(tiny_llama: Path, tmp_path: Path) -> None:
    folder = extract(str(tiny_llama), tmp_path / "sif", sif_coefficient=1e-3)
    encoder = Encoder(str(folder), backend="static", normalize=False)
    matrix = AutoModel.from_pretrained(tiny_llama).get_input_embeddings().weight.detach().numpy()
    weights = zipf_sif_weights(matrix.shape[0], 1e-3).numpy()
    np.testing.assert_allclose(
        encoder.encode(TEXTS[:3]),
        _reference_static(tiny_llama, TEXTS[:3], matrix * weights[:, None]),
        atol=1e-6,
    )
    assert weights[0] < weights[100] < weights[-1] < 1.0
    plain = Encoder(str(extract(str(tiny_llama), tmp_path / "plain")), backend="static")
    weighted = Encoder(str(folder), backend="static")
    assert np.sum(plain.encode(TEXTS) * weighted.encode(TEXTS), axis=1).min() < 0.9999


def test_bad_static_arguments(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not apply to the static backend"):
        Encoder("wordllama", backend="static", quantization="4bit")
    with pytest.raises(ValueError, match="bidirectional=True does not apply to a static model"):
        Encoder("wordllama", backend="static", bidirectional=True)
    with pytest.raises(TypeError, match=r"takes no arguments \['adapters'\]"):
        Encoder("wordllama", backend="static", adapters=["x"])
    with pytest.raises(ValueError, match="layer 1 is out of range for a model with 0 layers"):
        Encoder("wordllama", backend="static", layer=1)
    with pytest.raises(
        FileNotFoundError, match=r"neither a packaged name \['wordllama'\] nor a folder"
    ):
        Encoder(str(tmp_path / "nothing"), backend="static")
    with pytest.raises(ValueError, match=r"has no codebook tensor.*llmvec\.static\.extract"):
        Encoder(str(tiny_llama), backend="static")
    with pytest.raises(FileNotFoundError, match=r"lacks \['model.safetensors', 'tokenizer.json'\]"):
        Encoder(str(tmp_path), backend="static")
    with pytest.raises(ValueError, match="dim must be an integer from 1 to 64, got 65"):
        extract(str(tiny_llama), tmp_path / "too-wide", dim=65)
    small = extract(str(tiny_llama), tmp_path / "small")
    save_file({"embeddings": torch.zeros(10, 4)}, str(small / "model.safetensors"))
    with pytest.raises(ValueError, match="but the codebook only 10 rows"):
        Encoder(str(small), backend="static")
    save_file({"other": torch.zeros(10, 4)}, str(small / "model.safetensors"))
    with pytest.raises(ValueError, match=r"has no codebook tensor; expected one of \['embeddings'"):
        Encoder(str(small), backend="static")
    with pytest.raises(
        ValueError, match=r"unknown backend 'nope'; allowed: \['transformers', 'static'"
    ):
        Encoder("wordllama", backend="nope")
