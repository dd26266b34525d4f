"""The static backend: WordLlama's shipped model against wordllama's own ``embed``, models
extracted from an LLM (with PCA and SIF weights) against plain references, and the encoder's
post-processing (Matryoshka, binary) on static vectors."""

from __future__ import annotations

import importlib.util
import json
import re
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


# ---------------------------------------------------------------------- the lean path
def test_lean_path_equals_the_general_path(tiny_llama: Path, tmp_path: Path) -> None:
    """Plain mean pooling takes the lean path; the encoder's general path (tokenize, then pool
    the hidden states) gives the same vectors."""
    folder = extract(str(tiny_llama), tmp_path / "sif", dim=16, sif_coefficient=1e-3)
    for model in (str(folder), "wordllama"):
        encoder = Encoder(model, backend="static", normalize=False)
        general = encoder.pool(encoder.tokenize(TEXTS)).numpy()
        np.testing.assert_allclose(encoder.encode(TEXTS), general, atol=1e-6)
    # No special tokens in either path (the tiny tokenizer adds a BOS of its own).
    plain = AutoTokenizer.from_pretrained(tiny_llama)
    bare = plain("Paris", add_special_tokens=False)["input_ids"]
    assert plain("Paris")["input_ids"] != bare
    assert Encoder(str(folder), backend="static").tokenize("Paris")[0].ids == bare


def test_lean_path_truncates_and_handles_empty_texts(tiny_llama: Path, tmp_path: Path) -> None:
    folder = extract(str(tiny_llama), tmp_path / "plain")
    encoder = Encoder(str(folder), backend="static", normalize=False, max_length=8)
    matrix = AutoModel.from_pretrained(tiny_llama).get_input_embeddings().weight.detach().numpy()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    long_text = " ".join(TEXTS * 3)
    huge_text = "guitar " * 50_000  # far past the window the lean path tokenizes
    texts = ["", long_text, huge_text, "   "]
    vectors = encoder.encode(texts)
    assert not vectors[0].any()
    # A server's path (tokenized once, then encode_inputs) gives the same vectors.
    np.testing.assert_array_equal(encoder.encode_inputs(encoder.tokenize(texts)), vectors)
    for row, text in ((1, long_text), (2, huge_text)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:8]
        np.testing.assert_allclose(vectors[row], matrix[ids].mean(axis=0), atol=1e-6)
    normalized = Encoder(str(folder), backend="static").encode(["", "Paris"])
    assert not normalized[0].any() and abs(np.linalg.norm(normalized[1]) - 1) < 1e-6
    as_torch = encoder.encode(TEXTS, convert_to="torch")
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32


def test_lean_path_leaves_out_the_unknown_token(minilm: Encoder, tmp_path: Path) -> None:
    """A WordPiece vocabulary maps what it cannot spell to [UNK]: model2vec drops it, so does
    llmvec (a row averaged from nothing in particular)."""
    tokenizer = minilm.tokenizer
    rng = np.random.default_rng(0)
    table = rng.standard_normal((len(tokenizer), 8)).astype(np.float32)
    folder = tmp_path / "wordpiece"
    folder.mkdir()
    save_file({"embeddings": torch.from_numpy(table)}, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(folder)
    encoder = Encoder(str(folder), backend="static", normalize=False)
    text = "coffee 🙂 tea"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id in ids
    known = [i for i in ids if i != tokenizer.unk_token_id]
    np.testing.assert_allclose(encoder.encode(text)[0], table[known].mean(axis=0), atol=1e-6)
    # So does a server's path, an instruction's tokens never pooled.
    task = "Represent the text"
    served = encoder.encode_inputs(encoder.tokenize([text, ""], instruction=task), instruction=task)
    np.testing.assert_array_equal(served, encoder.encode([text, ""]))


def _model2vec_tokenizer(tiny_llama: Path) -> object:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_llama / "tokenizer.json"))


@pytest.mark.parametrize("variant", ["plain", "weights", "mapping"])
def test_model2vec_folders_match_model2vec(tiny_llama: Path, tmp_path: Path, variant: str) -> None:
    """model2vec's own folders (its ``weights`` and vocabulary-quantization ``mapping``) give
    model2vec's own vectors."""
    from model2vec import StaticModel

    tokenizer = _model2vec_tokenizer(tiny_llama)
    vocab = tokenizer.get_vocab_size()  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    rows = 40 if variant == "mapping" else vocab
    vectors = rng.standard_normal((rows, 12)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, vocab) if variant != "plain" else None
    mapping = rng.integers(0, rows, vocab) if variant == "mapping" else None
    model = StaticModel(
        vectors=vectors,
        tokenizer=tokenizer,
        normalize=False,
        weights=weights,
        token_mapping=mapping,
    )
    folder = tmp_path / variant
    model.save_pretrained(folder)
    expected = StaticModel.from_pretrained(folder).encode(TEXTS, normalize=False)
    encoder = Encoder(str(folder), backend="static", normalize=False)
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-6)
    assert encoder.spec.model_revision and encoder.spec.model_revision.startswith("sha256:")


def test_sentence_transformers_static_folder(tiny_llama: Path, tmp_path: Path) -> None:
    """sentence-transformers keeps a StaticEmbedding's files in ``0_StaticEmbedding/``."""
    rng = np.random.default_rng(2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    table = rng.standard_normal((len(tokenizer), 6)).astype(np.float32)
    module = tmp_path / "st" / "0_StaticEmbedding"
    module.mkdir(parents=True)
    save_file({"embedding.weight": torch.from_numpy(table)}, str(module / "model.safetensors"))
    tokenizer.backend_tokenizer.save(str(module / "tokenizer.json"))
    encoder = Encoder(str(tmp_path / "st"), backend="static", normalize=False)
    np.testing.assert_allclose(
        encoder.encode(TEXTS[:3]), _reference_static(tiny_llama, TEXTS[:3], table), atol=1e-6
    )


# ---------------------------------------------------------------------- distillation
def _principal_components(matrix: np.ndarray, dim: int) -> np.ndarray:
    centered = matrix.astype(np.float64) - matrix.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    return (centered @ components[:dim].T).astype(np.float32)


def _distilled(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    return tensors["embeddings"], tensors.get("token_weights")


def _same_up_to_sign(actual: np.ndarray, expected: np.ndarray) -> None:
    """Principal components are defined up to sign: compare each column's magnitude and the
    rows' inner products."""
    np.testing.assert_allclose(np.abs(actual), np.abs(expected), atol=2e-4)
    np.testing.assert_allclose(actual @ actual.T, expected @ expected.T, atol=2e-3, rtol=1e-3)


def test_distill_embeds_each_token_through_the_model(tiny_llama: Path, tmp_path: Path) -> None:
    """Every non-special token alone through the model (mean over the text, BOS left out, at
    the last layer), PCA to 8, Zipf / SIF weights."""
    from llmvec.static import distill

    folder = distill(str(tiny_llama), tmp_path / "distilled", dim=8, sif_coefficient=1e-3)
    model = AutoModel.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    with torch.no_grad():
        inputs = torch.tensor([[tokenizer.bos_token_id, i] for i in ids])
        states = model(input_ids=inputs).last_hidden_state[:, 1].numpy()
    table, weights = _distilled(folder)
    assert table.shape == (len(tokenizer), 8)
    _same_up_to_sign(table[ids], _principal_components(states, 8))
    assert not table[sorted(special)].any()
    # Each distilled token's frequency is estimated from its rank among the distilled ones.
    np.testing.assert_allclose(weights[ids], zipf_sif_weights(len(ids), 1e-3).numpy())
    assert (weights[sorted(special)] == 1).all()
    encoder = Encoder(str(folder), backend="static", normalize=False)
    expected = _reference_static(tiny_llama, TEXTS[:3], table * weights[:, None])
    np.testing.assert_allclose(encoder.encode(TEXTS[:3]), expected, atol=1e-6)


def test_distill_keeps_the_recipe(tiny_llama: Path, tmp_path: Path) -> None:
    """With a template, each token sits in the text's slot and the template's last token is
    pooled, at the chosen layer."""
    from llmvec.encoding.templates import TEMPLATES
    from llmvec.static import distill

    vocabulary = ["Paris", "Ġguitar", "a", "Ġthe"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    known = [token for token in vocabulary if token in tokenizer.get_vocab()]
    assert len(known) >= 2
    folder = distill(
        str(tiny_llama),
        tmp_path / "prompteol",
        dim=None,
        vocabulary=known,
        sif_coefficient=None,
        template="prompteol",
        layer=1,
    )
    model = AutoModel.from_pretrained(tiny_llama).eval()
    head, tail = TEMPLATES["prompteol"].split("{text}")
    head_ids = tokenizer(head)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    table, weights = _distilled(folder)
    assert weights is None
    for token in known:
        token_id = tokenizer.convert_tokens_to_ids(token)
        with torch.no_grad():
            ids = torch.tensor([[*head_ids, token_id, *tail_ids]])
            state = model(input_ids=ids, output_hidden_states=True).hidden_states[1][0, -1]
        np.testing.assert_allclose(table[token_id], state.numpy(), atol=1e-5)
    others = [i for i in range(len(tokenizer)) if i not in tokenizer.convert_tokens_to_ids(known)]
    assert not table[others].any()


def test_distill_bad_input(tiny_llama: Path, tmp_path: Path) -> None:
    from llmvec.static import distill

    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"2 vocabulary entries are not tokens.*'zzqx', 'qqzz'"):
        distill(str(tiny_llama), out, dim=4, vocabulary=["a", "zzqx", "qqzz"])
    with pytest.raises(ValueError, match="dim=65 exceeds what the teacher gives: 64 dimensions"):
        distill(str(tiny_llama), out, dim=65)
    with pytest.raises(ValueError, match="vocabulary is empty"):
        distill(str(tiny_llama), out, vocabulary=[])
    with pytest.raises(ValueError, match="dim must be a positive integer or None, got 0"):
        distill(str(tiny_llama), out, dim=0)
    with pytest.raises(ValueError, match=r"exclude '\[' is not a regular expression"):
        distill(str(tiny_llama), out, exclude="[")
    with pytest.raises(ValueError, match=r"no token of the vocabulary is left once '\.\*'"):
        distill(str(tiny_llama), out, exclude=".*")
    assert not out.exists()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).symlink_to(tiny_llama / name)
    with pytest.raises(OSError, match="tokenizer"):
        distill(str(no_tokenizer), out, dim=4)
    assert not out.exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a static model folder"):
        distill(str(tiny_llama), notes, dim=4)
    assert [p.name for p in notes.iterdir()] == ["keep.txt"]


def test_distill_command(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmvec.cli import main

    vocabulary = tmp_path / "vocabulary.txt"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokens = [t for t in list(tokenizer.get_vocab())[:40] if t not in tokenizer.all_special_tokens]
    vocabulary.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    out = tmp_path / "cli"
    assert (
        main(
            [
                "distill",
                str(tiny_llama),
                str(out),
                "--dim",
                "8",
                "--vocabulary",
                str(vocabulary),
                "--template",
                "prompteol",
            ]
        )
        == 0
    )
    assert f"into {out}" in capsys.readouterr().out
    table, weights = _distilled(out)
    assert table.shape == (len(tokenizer), 8) and weights is not None
    assert np.count_nonzero(np.abs(table).sum(axis=1)) == len(tokens)
    assert main(["encode", "--backend", "static", "--model", str(out), "Paris"]) == 0
    assert len(json.loads(capsys.readouterr().out.splitlines()[-1])) == 8


def _round_trip_tokens(encoder: Encoder, count: int, start: int = 300) -> list[int]:
    """Ids of tokens whose text alone tokenizes back to exactly that token in the recipe's
    inputs: the encoder's own vector of that text is then the distilled row."""
    from llmvec.static.distillation import token_slot

    head, tail, _ = token_slot(encoder)
    picked: list[int] = []
    for token_id in range(start, len(encoder.tokenizer)):
        text = encoder.tokenizer.decode([token_id])
        if text.strip() and encoder.tokenize(text)[0].ids == [*head, token_id, *tail]:
            picked.append(token_id)
            if len(picked) == count:
                break
    assert len(picked) == count
    return picked


def _rows_are_the_encoders_own_vectors(encoder: Encoder, folder: Path) -> None:
    from llmvec.static import distill

    ids = _round_trip_tokens(encoder, 6, start=min(300, len(encoder.tokenizer) // 2))
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids)
    distill(encoder, folder, dim=None, vocabulary=tokens, sif_coefficient=None)
    table, _ = _distilled(folder)
    texts = [encoder.tokenizer.decode([token_id]) for token_id in ids]
    expected = encoder.encode(texts, normalize=False)
    np.testing.assert_allclose(table[ids], expected, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_distill_from_smollm2_with_ke(tmp_path: Path) -> None:
    """A decoder with a template: the token in the text's slot, the last token at layer -2."""
    _rows_are_the_encoders_own_vectors(Encoder("smollm2", template="ke"), tmp_path / "static")


@pytest.mark.slow
def test_distill_from_gemma3(gemma3: Encoder, tmp_path: Path) -> None:
    """Gemma 3 270M's default recipe: the mean over the token, BOS left out."""
    _rows_are_the_encoders_own_vectors(gemma3, tmp_path / "static")


@pytest.mark.slow
def test_distill_from_minilm(minilm: Encoder, tmp_path: Path) -> None:
    """A BERT-style teacher: ``[CLS] token [SEP]``, the mean over all three (model2vec's input)."""
    _rows_are_the_encoders_own_vectors(minilm, tmp_path / "static")


def test_distill_from_a_trained_folder(tiny_llama: Path, tmp_path: Path) -> None:
    from llmvec.training.stages import train_simcse

    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(TEXTS * 4) + "\n", encoding="utf-8")
    trained = train_simcse(
        str(tiny_llama),
        str(data),
        str(tmp_path / "trained"),
        template="ke",
        max_steps=2,
        batch_size=4,
        show_progress=False,
    )
    _rows_are_the_encoders_own_vectors(Encoder(str(trained)), tmp_path / "static")


# ---------------------------------------------------------------------- in the indexes
DOCUMENTS = [
    "The guitar player tuned his instrument before the concert.",
    "Stock markets fell sharply on Monday after the announcement.",
    "Bees dance to show where the flowers are.",
    "The recipe needs flour, butter and two eggs.",
    "Paris is the capital and largest city of France.",
    "The spacecraft entered orbit around Mars last week.",
]
NEAR_DUPLICATES = [
    "A guitar player tuned his instrument before a concert.",
    "Stock markets fell on Monday after an announcement.",
    "Bees dance to show where flowers are.",
    "This recipe needs flour, butter and eggs.",
    "Paris is the capital city of France.",
    "A spacecraft entered orbit around Mars.",
]


@pytest.mark.parametrize("store", ["faiss-binary", "qdrant-edge-binary"])
def test_static_vectors_in_binary_indexes(store: str, tmp_path: Path) -> None:
    """Matryoshka-truncated static vectors in FAISS's binary index (Hamming candidates,
    rescored) and Qdrant Edge's binary quantization, with the static model's fingerprint in
    the stored spec."""
    from llmvec import FaissIndex, QdrantIndex

    encoder = Encoder("wordllama", backend="static", truncate_dim=128)
    if store == "faiss-binary":
        index = FaissIndex(encoder, precision="binary", sparse=False)
    else:
        index = QdrantIndex(
            encoder, path=tmp_path / "edge", engine="edge", quantization="binary", sparse=False
        )
    index.add(DOCUMENTS, ids=list(range(len(DOCUMENTS))))
    assert index.spec.model_revision == "wordllama==0.4.0.post1:l2_supercat_256"
    assert index.spec.backend == "static" and index.spec.truncate_dim == 128
    for expected, query in enumerate(NEAR_DUPLICATES):
        assert index.search(query, k=1)[0].id == expected
    if isinstance(index, QdrantIndex):
        index.close()


def test_a_store_refuses_a_changed_static_model(tiny_llama: Path, tmp_path: Path) -> None:
    """The spec records the static model's fingerprint: the same folder with other weights
    cannot write into (or search) a store made with the first ones."""
    from llmvec import FaissIndex

    folder = extract(str(tiny_llama), tmp_path / "static", dim=16)
    index = FaissIndex(Encoder(str(folder), backend="static"), sparse=False)
    index.add(DOCUMENTS)
    index.save(tmp_path / "store")
    extract(str(tiny_llama), folder, dim=16, sif_coefficient=1e-3)  # replaced atomically
    changed = Encoder(str(folder), backend="static")
    assert changed.dim == 16
    with pytest.raises(ValueError, match="model_revision"):
        FaissIndex.load(tmp_path / "store", changed)


def test_distill_leaves_out_bert_placeholders(minilm: Encoder) -> None:
    """BERT's ``[unusedN]`` tokens were never trained: model2vec leaves them out, so does llmvec
    (unless ``exclude=None``)."""
    from llmvec.static.distillation import DEFAULT_EXCLUDED_TOKENS, vocabulary_ids

    vocab = minilm.tokenizer.get_vocab()
    default = vocabulary_ids(minilm, None, re.compile(DEFAULT_EXCLUDED_TOKENS))
    everything = vocabulary_ids(minilm, None, None)
    kept = set(default)
    left_out = {vocab_id for vocab_id in everything if vocab_id not in kept}
    assert vocab["[unused0]"] in left_out and vocab["the"] in default
    assert all(re.fullmatch(r"\[unused\d+\]", t) for t, i in vocab.items() if i in left_out)
    assert len(left_out) == sum(1 for t in vocab if re.fullmatch(r"\[unused\d+\]", t))


def test_lean_path_blocks_give_the_same_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call is tokenized and reduced a block of texts at a time; blocks change nothing."""
    from llmvec.backends import static_means

    encoder = Encoder("wordllama", backend="static")
    texts = [f"{text} {number}" for number in range(7) for text in TEXTS]
    whole = encoder.encode(texts)
    monkeypatch.setattr(static_means, "TEXTS_PER_BLOCK", 4)
    monkeypatch.setattr(static_means, "GATHER_ROWS", 8)
    np.testing.assert_array_equal(encoder.encode(texts), whole)


def test_llmvec_index_and_search_with_a_static_model(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A distilled static model serves the main job: index a folder, search it, and a re-run
    finds nothing to encode."""
    from llmvec.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for number, text in enumerate(DOCUMENTS):
        (docs / f"note{number}.txt").write_text(text, encoding="utf-8")
    model = ["--backend", "static", "--model", "wordllama"]
    store = ["--store", f"faiss:{tmp_path / 'store'}"]
    assert main(["index", str(docs), *store, *model]) == 0
    assert "6 new" in capsys.readouterr().out
    assert main(["search", NEAR_DUPLICATES[2], "-k", "1", "--json", *store]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["source"].endswith("note2.txt")
    assert main(["index", str(docs), *store]) == 0  # the store's own recipe: static
    assert "6 unchanged" in capsys.readouterr().out


def test_static_tokenizers_match_autotokenizer(
    tiny_llama: Path, minilm: Encoder, tmp_path: Path
) -> None:
    """A static model's tokenizer is built from its files without AutoTokenizer (whose import
    takes seconds): the same ids and special tokens as AutoTokenizer gives."""
    import subprocess
    import sys

    from llmvec.backends.static_files import load_tokenizer, locate

    folders = [extract(str(tiny_llama), tmp_path / "llama")]
    wordpiece = tmp_path / "wordpiece"
    wordpiece.mkdir()
    table = torch.zeros(len(minilm.tokenizer), 4)
    save_file({"embeddings": table}, str(wordpiece / "model.safetensors"))
    minilm.tokenizer.save_pretrained(wordpiece)
    folders.append(wordpiece)
    texts = [*TEXTS, "coffee 🙂 [UNK] [SEP] tea", ""]
    for folder in folders:
        ours = load_tokenizer(locate(str(folder)))
        reference = AutoTokenizer.from_pretrained(folder)
        assert ours(texts)["input_ids"] == reference(texts)["input_ids"]
        assert (
            ours(texts, add_special_tokens=False)["input_ids"]
            == reference(texts, add_special_tokens=False)["input_ids"]
        )
        for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
            assert getattr(ours, f"{name}_token_id") == getattr(reference, f"{name}_token_id")
    probe = (
        "import sys; from llmvec import Encoder; Encoder('wordllama', backend='static'); "
        "print('transformers.models.auto.tokenization_auto' in sys.modules)"
    )
    command = [sys.executable, "-c", probe]
    assert subprocess.run(command, capture_output=True, text=True, check=True).stdout == "False\n"
