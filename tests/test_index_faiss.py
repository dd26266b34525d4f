"""FaissIndex against numpy brute force, on random vectors and with a real encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from index_data import clustered, example_texts, recall, top_k

import llmvec
from llmvec.compress import calibrate, dequantize, hamming_similarity, quantize
from llmvec.index import FaissIndex, Hit, VectorIndex
from llmvec.index import faiss as faiss_module
from llmvec.spec import EmbeddingSpec

DIM = 48
SPEC = EmbeddingSpec(model="test-vectors", dim=DIM)
SETTINGS = [
    ("float32", "flat"),
    ("float32", "hnsw"),
    ("float32", "ivf"),
    ("int8", "flat"),
    ("int8", "hnsw"),
    ("int8", "ivf"),
    ("binary", "flat"),
    ("binary", "hnsw"),
]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(600, DIM, seed=1)


def _index(data: np.ndarray, precision: str = "float32", kind: str = "flat", **kw) -> FaissIndex:
    index = FaissIndex(spec=SPEC, precision=precision, kind=kind, **kw)
    index.add_embeddings(
        data,
        ids=list(range(len(data))),
        texts=[f"doc {i}" for i in range(len(data))],
        metadata=[{"group": i % 3, "even": i % 2 == 0} for i in range(len(data))],
    )
    return index


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_float32_flat_is_exact(data: np.ndarray) -> None:
    index = _index(data)
    assert isinstance(index, VectorIndex) and len(index) == 600
    for q in range(5):
        rows, scores = top_k(data, data[q], 10)
        hits = index.search(data[q], k=10)
        assert [h.id for h in hits] == rows.tolist()
        np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5, atol=1e-6)
        assert hits[0] == Hit(q, hits[0].score, f"doc {q}", {"group": q % 3, "even": q % 2 == 0})


@pytest.mark.parametrize(("precision", "kind"), SETTINGS)
def test_recall_against_brute_force(data: np.ndarray, precision: str, kind: str) -> None:
    index = _index(data, precision, kind, rescore_dtype="float32", nprobe=8)
    batch = index.search(data[:20] * 0.9 + data[20:40] * 0.1, k=10)
    assert len(batch) == 20
    recalls = []
    for query, hits in zip(data[:20] * 0.9 + data[20:40] * 0.1, batch, strict=True):
        rows, _ = top_k(data, query, 10)
        recalls.append(recall([h.id for h in hits], rows.tolist()))
        if precision != "float32":  # rescored: every score is the exact inner product
            exact = data[[h.id for h in hits]] @ query
            np.testing.assert_allclose([h.score for h in hits], exact, rtol=1e-5, atol=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert np.mean(recalls) >= (0.9 if precision != "binary" else 0.8)


def test_int8_uses_the_spec_calibration(data: np.ndarray) -> None:
    calibration = calibrate(data[:100])
    index = FaissIndex(spec=SPEC, precision="int8", rescore=False, calibration=calibration)
    assert index.spec.precision == "int8" and index.spec.calibration == calibration
    index.add_embeddings(data, ids=list(range(600)))
    # Without rescoring, scores are inner products with the dequantized codes.
    decoded = dequantize(quantize(data, "uint8", calibration), "uint8", calibration)
    hits = index.search(data[7], k=5)
    np.testing.assert_allclose(
        [h.score for h in hits], decoded[[h.id for h in hits]] @ data[7], rtol=1e-4, atol=1e-4
    )
    rows, _ = top_k(decoded, data[7], 5)
    assert [h.id for h in hits] == rows.tolist()


def test_int8_calibrates_on_the_first_batch(data: np.ndarray) -> None:
    index = FaissIndex(spec=SPEC, precision="int8")
    index.add_embeddings(data[:200], ids=list(range(200)))
    assert index.spec.calibration == calibrate(data[:200])
    index.add_embeddings(data[200:], ids=list(range(200, 600)))
    assert index.spec.calibration == calibrate(data[:200])


def test_binary_without_rescore_ranks_by_hamming(data: np.ndarray) -> None:
    index = _index(data, "binary", rescore=False)
    codes = quantize(data, "ubinary")
    hits = index.search(data[3], k=8)
    similarity = hamming_similarity(codes[3:4], codes)[0]
    expected = np.sort(similarity)[::-1][:8]
    np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-6)
    np.testing.assert_allclose([similarity[h.id] for h in hits], expected, rtol=1e-6)


def test_binary_rescore_reranks_hamming_candidates(data: np.ndarray) -> None:
    index = _index(data, "binary", oversample=5, rescore_dtype="float32")
    codes = quantize(data, "ubinary")
    for q in range(10):
        hits = index.search(data[q], k=4)
        hamming = hamming_similarity(codes[q : q + 1], codes)[0]
        # Every hit comes from the 20 best Hamming candidates (ties at the border included)...
        border = np.sort(hamming)[::-1][19]
        assert all(hamming[h.id] >= border for h in hits)
        # ... ordered by the exact float score, which no other sure candidate beats.
        exact = data @ data[q]
        ids = [h.id for h in hits]
        assert [h.score for h in hits] == pytest.approx(sorted(exact[ids], reverse=True))
        others = [c for c in np.flatnonzero(hamming > border) if c not in ids]
        assert all(exact[c] <= hits[-1].score + 1e-6 for c in others)


def test_binary_rescore_beats_no_rescore(data: np.ndarray) -> None:
    with_rescore = _index(data, "binary")
    without = _index(data, "binary", rescore=False)
    queries = data[100:140]
    exact = [top_k(data, q, 10)[0].tolist() for q in queries]
    got = [[h.id for h in hits] for hits in with_rescore.search(queries, k=10)]
    plain = [[h.id for h in hits] for hits in without.search(queries, k=10)]
    r_rescore = np.mean([recall(g, e) for g, e in zip(got, exact, strict=True)])
    r_plain = np.mean([recall(g, e) for g, e in zip(plain, exact, strict=True)])
    assert r_rescore > r_plain


@pytest.mark.parametrize(("precision", "kind"), [("float32", "flat"), ("binary", "hnsw")])
def test_filter_matches_brute_force_on_the_subset(
    data: np.ndarray, precision: str, kind: str
) -> None:
    index = _index(data, precision, kind, rescore_dtype="float32")
    subset = np.array([i for i in range(600) if i % 3 == 1 and i % 2 == 0])
    hits = index.search(data[5], k=5, filter={"group": 1, "even": True})
    assert all(h.metadata["group"] == 1 and h.metadata["even"] for h in hits)
    rows, _ = top_k(data[subset], data[5], 5)
    if precision == "float32":
        assert [h.id for h in hits] == subset[rows].tolist()
    any_of = index.search(data[5], k=50, filter={"group": [0, 2]})
    assert len(any_of) == 50 and {h.metadata["group"] for h in any_of} <= {0, 2}
    assert index.search(data[5], k=3, filter={"group": 7}) == []


@pytest.mark.parametrize(("precision", "kind"), SETTINGS)
def test_delete_and_replace(data: np.ndarray, precision: str, kind: str) -> None:
    index = _index(data, precision, kind)
    assert index.search(data[9], k=1)[0].id == 9
    index.delete([9, 10, 12345])  # unknown ids are ignored
    assert len(index) == 598
    assert all(h.id not in (9, 10) for h in index.search(data[9], k=20))
    # Re-adding an id replaces its vector, text and metadata.
    index.add_embeddings(data[50:51], ids=[11], texts=["moved"], metadata=[{"group": 9}])
    assert len(index) == 598
    top = index.search(data[50], k=2)
    assert {h.id for h in top} == {11, 50}
    assert next(h for h in top if h.id == 11).text == "moved"


@pytest.mark.parametrize(("precision", "kind"), SETTINGS)
def test_save_load_round_trip(tmp_path: Path, data: np.ndarray, precision: str, kind: str) -> None:
    index = _index(data, precision, kind)
    index.delete([4])
    index.add_embeddings(data[:2], ids=["a", "b"], texts=None, metadata=[{"k": [1, 2]}, {}])
    before = index.search(data[:5], k=6)
    index.save(tmp_path / "idx")
    assert sorted(os.listdir(tmp_path)) == [".idx.lock", "idx"]  # no staging folder left
    loaded = FaissIndex.load(tmp_path / "idx")
    assert loaded.spec == index.spec and len(loaded) == len(index) == 601
    assert loaded.search(data[:5], k=6) == before
    assert {1, "a", "b"} <= set(loaded.ids) and 4 not in loaded.ids
    loaded.add_embeddings(data[4:5], ids=[4])
    assert loaded.search(data[4], k=1)[0].id in (4, "a") or precision == "binary"
    loaded.save(tmp_path / "idx")  # overwriting an earlier save
    assert len(FaissIndex.load(tmp_path / "idx")) == 602


def test_text_index_with_a_real_encoder(tmp_path: Path, minilm: llmvec.Encoder) -> None:
    texts = example_texts()
    index = llmvec.FaissIndex(minilm, precision="binary", rescore_dtype="float32")
    metadata = [{"n": i} for i in range(len(texts))]
    ids = index.add(list(texts.values()), ids=list(texts), metadata=metadata)
    assert ids == list(texts) and len(index) == len(texts)
    hits = index.search("How do bees tell each other where the flowers are?", k=3)
    assert hits[0].id == "honeybees.md" and hits[0].text == texts["honeybees.md"]
    # Scores are the exact cosine similarities of the encoder's vectors.
    query = minilm.encode_queries(["How do bees tell each other where the flowers are?"])[0]
    documents = minilm.encode_documents(list(texts.values()))
    expected = documents[[list(texts).index(h.id) for h in hits]] @ query
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-5)
    index.save(tmp_path / "bees")
    loaded = FaissIndex.load(tmp_path / "bees", encoder=minilm)
    batch = loaded.search(["fixing a punctured tyre", "why the sea rises twice a day"], k=1)
    assert [b[0].id for b in batch] == ["bicycle_repair.txt", "tides.md"]
    # Without an encoder, the first text query builds one from the stored spec.
    alone = FaissIndex.load(tmp_path / "bees")
    assert alone.search("rule of 72", k=1)[0].id == "compound_interest.txt"
    assert alone.encoder.spec == minilm.spec


def test_load_refuses_a_different_encoder(tmp_path: Path, minilm: llmvec.Encoder) -> None:
    other = minilm.spec.replace(pooling="last_token", max_length=128)
    index = FaissIndex(spec=other)
    index.add_embeddings(np.eye(1, minilm.dim, dtype=np.float32), ids=["x"])
    index.save(tmp_path / "idx")
    with pytest.raises(ValueError, match=r"pooling: stored 'last_token' != encoder 'mean'") as e:
        FaissIndex.load(tmp_path / "idx", encoder=minilm)
    assert "max_length" in str(e.value) and "precision" not in str(e.value)
    # precision and calibration belong to the index: an int8 index accepts a float encoder.
    int8 = FaissIndex(minilm, precision="int8")
    int8.add_embeddings(np.random.default_rng(0).standard_normal((5, minilm.dim)))
    int8.save(tmp_path / "int8")
    assert FaissIndex.load(tmp_path / "int8", encoder=minilm).spec.calibration is not None


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda ix, d: ix.add_embeddings(d[:, :10]), ValueError, "dimension 10, the index expects"),
        (lambda ix, d: ix.search(d[0, :10]), ValueError, "dimension 10"),
        (lambda ix, d: ix.search(d[0], k=0), ValueError, "k must be a positive integer, got 0"),
        (lambda ix, d: ix.add_embeddings(d[:2], ids=[1, 1]), ValueError, r"duplicate ids.*'1'"),
        (lambda ix, d: ix.add_embeddings(d[:1], ids=[True]), ValueError, "invalid id True"),
        (lambda ix, d: ix.add_embeddings(d[:1], ids=[""]), ValueError, "invalid id ''"),
        (lambda ix, d: ix.add_embeddings(d[:1], ids=[2**64]), ValueError, "invalid id"),
        (lambda ix, d: ix.add_embeddings(d[:1], ids=[1.5]), ValueError, "invalid id 1.5"),
        (lambda ix, d: ix.add_embeddings(d[:2], ids=[1]), ValueError, "got 1 ids for 2"),
        (lambda ix, d: ix.add_embeddings(d[:1], metadata=[{"x": {1}}]), ValueError, "JSON"),
        (lambda ix, d: ix.add_embeddings(d[:1] * np.nan), ValueError, "NaN"),
        (lambda ix, d: ix.search(d[0], filter={"g": [[1]]}), TypeError, "filter value"),
        (lambda ix, d: ix.search({"q": 1}), TypeError, "query must be"),
    ],
)
def test_bad_input_changes_nothing(
    tmp_path: Path, data: np.ndarray, call, error: type[Exception], message: str
) -> None:
    index = _index(data[:50])
    index.save(tmp_path / "idx")
    saved = _files(tmp_path / "idx")
    before = index.search(data[0], k=5)
    with pytest.raises(error, match=message):
        call(index, data)
    assert len(index) == 50 and index.search(data[0], k=5) == before
    assert _files(tmp_path / "idx") == saved


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"precision": "float16"},
            r"precision 'float16'; allowed: \['float32', 'int8', 'binary'\]",
        ),
        ({"kind": "lsh"}, r"unknown kind 'lsh'.*allowed: \['flat', 'hnsw', 'ivf'\]"),
        ({"precision": "binary", "kind": "ivf"}, r"allowed: \['flat', 'hnsw'\]"),
        ({"oversample": 0.5}, "oversample must be a number >= 1"),
        ({"rescore_dtype": "int8"}, r"rescore_dtype 'int8'; allowed: \['float32', 'float16'\]"),
        ({"calibration": ((0.0,), (1.0,))}, "calibration applies to precision 'int8'"),
        ({"precision": "int8", "calibration": ((0.0,), (1.0,))}, r"shape \(2, 48\)"),
        ({"hnsw_m": 0}, "hnsw_m must be a positive integer"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaissIndex(spec=SPEC, **kwargs)


def test_ivf_needs_enough_vectors_in_its_first_batch(data: np.ndarray) -> None:
    index = FaissIndex(spec=SPEC, kind="ivf", nlist=64)
    with pytest.raises(ValueError, match="nlist=64 needs at least 64 vectors"):
        index.add_embeddings(data[:10])
    assert len(index) == 0


def test_save_refuses_a_foreign_directory(tmp_path: Path, data: np.ndarray) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"not an index")
    with pytest.raises(FileExistsError, match="not an llmvec index"):
        _index(data[:20]).save(foreign)
    assert _files(foreign) == {"cat.jpg": b"not an index"}


def test_failed_save_keeps_the_old_index(
    tmp_path: Path, data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    _index(data[:20]).save(tmp_path / "idx")
    saved = _files(tmp_path / "idx")

    def broken(path: Path, value: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss_module, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        _index(data[:30]).save(tmp_path / "idx")
    assert _files(tmp_path / "idx") == saved
    assert sorted(os.listdir(tmp_path)) == [".idx.lock", "idx"]


def test_load_reports_missing_and_corrupt_indexes(tmp_path: Path, data: np.ndarray) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FaissIndex.load(tmp_path / "nowhere")
    _index(data[:20], "binary").save(tmp_path / "idx")
    sidecar = tmp_path / "idx" / faiss_module.MARKER
    good = sidecar.read_text()
    sidecar.write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match="is corrupt"):
        FaissIndex.load(tmp_path / "idx")
    sidecar.write_text(good.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="version 99"):
        FaissIndex.load(tmp_path / "idx")
    sidecar.write_text(good)
    (tmp_path / "idx" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"corrupt index\.faiss"):
        FaissIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "index.faiss").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing index\.faiss"):
        FaissIndex.load(tmp_path / "idx")


def _edit_sidecar(path: Path, edit: object, keep_digest: bool = False) -> None:
    """Change the sidecar's state by hand: ``edit(state)``; by default as a person would, who
    leaves the digest as it was, else recomputing it (a sidecar edited by a program)."""
    sidecar = path / faiss_module.MARKER
    state = json.loads(sidecar.read_text())
    edit(state)  # type: ignore[operator]
    if keep_digest:
        state["digest"] = faiss_module._documents_digest(state)
    sidecar.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("kind", "precision"), [("flat", "float32"), ("hnsw", "float32"), ("ivf", "int8")]
)
@pytest.mark.parametrize("keep_digest", [False, True], ids=["by-hand", "digest-redone"])
def test_load_checks_that_labels_ids_and_vectors_agree(
    tmp_path: Path, data: np.ndarray, kind: str, precision: str, keep_digest: bool
) -> None:
    index = _index(data[:40], precision, kind)
    index.delete([3])
    index.save(tmp_path / "good")

    def relabel(state: dict) -> None:  # a document now points at a label with no vector
        state["documents"][0][0] = 10_000
        state["next_label"] = 10_001

    def duplicate(state: dict) -> None:
        state["documents"][1][1] = state["documents"][0][1]

    def drop(state: dict) -> None:  # a vector whose document is gone: KeyError before
        del state["documents"][5]

    def swap(state: dict) -> None:  # two documents trade vectors: the wrong hit before
        rows = state["documents"]
        rows[0][0], rows[1][0] = rows[1][0], rows[0][0]

    edits = {"relabel": relabel, "duplicate": duplicate, "drop": drop, "swap": swap}
    for name, edit in edits.items():
        if keep_digest and name == "swap":
            continue  # a consistent relabelling that also rewrote the digest is a valid index
        target = tmp_path / name
        index.save(target)
        _edit_sidecar(target, edit, keep_digest)
        with pytest.raises(ValueError, match=r"llmvec-faiss\.json|index\.faiss") as caught:
            FaissIndex.load(target)
        assert str(target) in str(caught.value), name
    if precision == "int8":  # rescoring vectors of the wrong count
        target = tmp_path / "vectors"
        index.save(target)
        np.save(target / "vectors.npy", np.zeros((3, DIM), dtype=np.float16))
        with pytest.raises(ValueError, match=r"vectors\.npy"):
            FaissIndex.load(target)
    assert len(FaissIndex.load(tmp_path / "good")) == 39


def test_empty_index(tmp_path: Path) -> None:
    index = FaissIndex(spec=SPEC, precision="binary")
    assert len(index) == 0 and index.search(np.ones(DIM), k=3) == []
    assert index.add_embeddings(np.empty((0, DIM))) == []
    index.save(tmp_path / "empty")
    assert len(FaissIndex.load(tmp_path / "empty")) == 0
