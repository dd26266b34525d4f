"""QdrantIndex on qdrant-client's embedded mode, on Qdrant Edge (the real engine in-process),
and on the url= path against a loopback stand-in server (the only mocked part)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from index_data import clustered, example_texts, recall, top_k
from qdrant_client import QdrantClient
from qdrant_server import fake_qdrant

import llmvec
from llmvec.index import Hit, VectorIndex
from llmvec.index.qdrant import ID_NAMESPACE, QdrantIndex, point_id
from llmvec.spec import EmbeddingSpec

DIM = 32
SPEC = EmbeddingSpec(model="test-vectors", dim=DIM)
ENGINES = ["memory", "path", "edge"]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(300, DIM, seed=3)


def _open(engine: str, root: Path, **kwargs) -> QdrantIndex:
    if engine == "memory":
        return QdrantIndex(spec=SPEC, **kwargs)
    if engine == "path":
        return QdrantIndex(spec=SPEC, path=root / "qdrant", **kwargs)
    return QdrantIndex(spec=SPEC, path=root / "edge", engine="edge", **kwargs)


def _fill(index: QdrantIndex, data: np.ndarray) -> QdrantIndex:
    index.add_embeddings(
        data,
        ids=list(range(len(data))),
        texts=[f"doc {i}" for i in range(len(data))],
        metadata=[
            {"group": i % 3, "tag": "even" if i % 2 == 0 else "odd"} for i in range(len(data))
        ],
    )
    return index


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_float_search_is_exact(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path), data)
    assert isinstance(index, VectorIndex) and len(index) == 300
    queries = data[:5] * 0.7 + data[5:10] * 0.3
    for query, hits in zip(queries, index.search(queries, k=10), strict=True):
        rows, _ = top_k(data, query, 10)
        assert recall([h.id for h in hits], rows.tolist()) == 1.0
        cosine = data[[h.id for h in hits]] @ query / np.linalg.norm(query)
        np.testing.assert_allclose([h.score for h in hits], cosine, atol=1e-5)
    first = index.search(data[4], k=1)[0]
    assert first == Hit(4, first.score, "doc 4", {"group": 1, "tag": "even"})
    index.close()


def test_point_ids_are_uuid5_of_typed_ids() -> None:
    assert point_id(7) == str(uuid.uuid5(ID_NAMESPACE, "int:7"))
    assert point_id("7") == str(uuid.uuid5(ID_NAMESPACE, "str:7"))
    assert point_id(7) != point_id("7") and point_id("a") == point_id("a")


@pytest.mark.parametrize("engine", ENGINES)
def test_reingestion_is_idempotent(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path), data[:50])
    _fill(index, data[:50])
    assert len(index) == 50
    index.add_embeddings(data[60:61], ids=[3], texts=["replaced"], metadata=[{"group": 9}])
    index.add_embeddings(data[61:62], ids=["3"], texts=["string id"])
    assert len(index) == 51
    hits = index.search(data[60], k=1)
    assert (hits[0].id, hits[0].text, hits[0].metadata) == (3, "replaced", {"group": 9})
    assert index.search(data[61], k=1)[0].id == "3"
    index.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_filter_and_delete(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path), data)
    hits = index.search(data[0], k=5, filter={"group": 2, "tag": "odd"})
    subset = np.array([i for i in range(300) if i % 3 == 2 and i % 2 == 1])
    rows, _ = top_k(data[subset], data[0], 5)
    assert [h.id for h in hits] == subset[rows].tolist()
    assert {h.metadata["group"] for h in index.search(data[0], k=40, filter={"group": [0, 1]})} <= {
        0,
        1,
    }
    index.delete([0, 1, 999])
    assert len(index) == 298
    assert all(h.id not in (0, 1) for h in index.search(data[0], k=10))
    index.close()


def _staged(data: np.ndarray, query: np.ndarray, dims: list[int], limits: list[int], k: int):
    """Reference multi-stage search: narrow with each truncated vector, rank with the full one."""
    candidates = np.arange(len(data))
    for dim, limit in zip(dims, limits, strict=True):
        small = data[candidates, :dim] / np.linalg.norm(data[candidates, :dim], axis=1)[:, None]
        scores = small @ (query[:dim] / np.linalg.norm(query[:dim]))
        candidates = candidates[np.argsort(-scores, kind="stable")[:limit]]
    scores = data[candidates] @ query
    return candidates[np.argsort(-scores, kind="stable")[:k]].tolist()


@pytest.mark.parametrize("engine", ["memory", "edge"])
def test_matryoshka_multistage_query(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path, matryoshka_dims=[16, 8], oversample=2), data)
    assert index.matryoshka_dims == (8, 16)
    for q in range(8):
        query = data[q] * 0.6 + data[q + 100] * 0.4
        query /= np.linalg.norm(query)
        hits = index.search(query, k=5)
        # Stage limits: 5 * 2 candidates per later stage: 20 from dim 8, 10 from dim 16.
        assert [h.id for h in hits] == _staged(data, query, [8, 16], [20, 10], 5)
    if engine == "memory":
        info = index._engine.client.get_collection("llmvec")  # type: ignore[attr-defined]
        assert set(info.config.params.vectors) == {"dim8", "dim16", "full"}
    index.close()


def test_edge_honours_binary_quantization(tmp_path: Path) -> None:
    vectors = clustered(2000, 256, seed=5)
    spec = EmbeddingSpec(model="test-vectors", dim=256)
    index = QdrantIndex(spec=spec, path=tmp_path / "edge", engine="edge", quantization="binary")
    index.add_embeddings(vectors, ids=list(range(2000)))
    index.optimize()  # builds the binary-quantized, HNSW-indexed segments
    index.close()
    recalls: dict[int, list[float]] = {4: [], 12: []}
    for oversample, found in recalls.items():
        rescored = QdrantIndex.load(tmp_path / "edge", oversample=oversample)
        for q in range(20):
            query = vectors[q] * 0.8 + vectors[q + 20] * 0.2
            hits = rescored.search(query, k=10)
            cosine = vectors[[h.id for h in hits]] @ query / np.linalg.norm(query)
            np.testing.assert_allclose([h.score for h in hits], cosine, atol=1e-4)  # rescored
            found.append(recall([h.id for h in hits], top_k(vectors, query, 10)[0].tolist()))
        rescored.close()
    plain = QdrantIndex.load(tmp_path / "edge", rescore=False)
    quantized_scores = [plain.search(vectors[q], k=3)[0].score for q in range(5)]
    plain.close()
    # Oversampling reaches the engine: more candidates rescored, better recall.
    assert np.mean(recalls[12]) >= 0.95 > np.mean(recalls[4])
    # Without rescoring the engine ranks by the binary codes: the scores are not cosines.
    assert not np.allclose(quantized_scores, 1.0, atol=1e-3)


def test_edge_matryoshka_with_binary_reranks_with_original_vectors(tmp_path: Path) -> None:
    vectors = clustered(1500, 64, seed=6)
    spec = EmbeddingSpec(model="test-vectors", dim=64)
    index = QdrantIndex(
        spec=spec,
        path=tmp_path / "edge",
        engine="edge",
        quantization="binary",
        matryoshka_dims=[32],
    )
    index.add_embeddings(vectors, ids=list(range(1500)))
    index.optimize()
    recalls = []
    for q in range(20):
        query = vectors[q] * 0.8 + vectors[q + 40] * 0.2
        query /= np.linalg.norm(query)
        hits = index.search(query, k=10)
        # The final stage ignores quantization: exact cosine scores of the full vectors.
        np.testing.assert_allclose(
            [h.score for h in hits], vectors[[h.id for h in hits]] @ query, atol=1e-4
        )
        recalls.append(recall([h.id for h in hits], top_k(vectors, query, 10)[0].tolist()))
    index.close()
    assert np.mean(recalls) >= 0.8


@pytest.mark.parametrize("engine", ["path", "edge"])
def test_spec_is_stored_and_checked_on_open(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    _fill(_open(engine, tmp_path, quantization="int8", matryoshka_dims=[8]), data[:20]).close()
    root = tmp_path / ("qdrant" if engine == "path" else "edge")
    loaded = QdrantIndex.load(root)
    assert loaded.spec == SPEC.replace(precision="int8")
    assert (loaded.quantization, loaded.matryoshka_dims, len(loaded)) == ("int8", (8,), 20)
    loaded.close()
    other = SPEC.replace(pooling="last_token", template="{text}!")
    with pytest.raises(ValueError, match=r"pooling: stored 'mean' != encoder 'last_token'"):
        QdrantIndex(
            spec=other,
            path=root,
            engine="client" if engine == "path" else "edge",
            quantization="int8",
            matryoshka_dims=[8],
        )
    with pytest.raises(ValueError, match=r"quantization: stored 'int8' != requested 'binary'"):
        _open(engine, tmp_path, quantization="binary", matryoshka_dims=[8])
    with pytest.raises(ValueError, match=r"matryoshka_dims: stored \(8,\) != requested \(\)"):
        _open(engine, tmp_path, quantization="int8")
    reopened = _open(engine, tmp_path, quantization="int8", matryoshka_dims=[8])
    assert len(reopened) == 20
    reopened.close()


@pytest.mark.parametrize("engine", ["memory", "edge"])
def test_save_copies_the_collection(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path, quantization="binary", matryoshka_dims=[16]), data)
    index.delete([7])
    expected = index.search(data[:3], k=4)
    index.save(tmp_path / "copy")
    index.close()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    copy = QdrantIndex.load(tmp_path / "copy")
    assert (len(copy), copy.engine, copy.matryoshka_dims) == (
        299,
        "client" if engine == "memory" else "edge",
        (16,),
    )
    # The copy holds the engine's stored (normalised) vectors: the same ranking, scores to 1e-6.
    for got, want in zip(copy.search(data[:3], k=4), expected, strict=True):
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)
    copy.close()


def test_text_index_with_a_real_encoder(minilm: llmvec.Encoder) -> None:
    texts = example_texts()
    with llmvec.QdrantIndex(minilm, "examples", quantization="binary") as index:
        index.add(list(texts.values()), ids=list(texts))
        assert index.spec == minilm.spec.replace(precision="binary")
        hits = index.search("what makes volcanoes explode?", k=2)
        assert hits[0].id == "volcanoes.md"
        with pytest.raises(ValueError, match="dimension 3, the index expects 384"):
            index.search([0.1, 0.2, 0.3])


# qdrant-client checks the server version in a background thread, which may outlive the stand-in.
@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_url_mode_uses_the_same_client_code(data: np.ndarray) -> None:
    with fake_qdrant() as server:
        remote = QdrantIndex(spec=SPEC, url=server.url, collection="docs", matryoshka_dims=[8])
        _fill(remote, data)
        local = _fill(QdrantIndex(spec=SPEC, matryoshka_dims=[8]), data)
        assert remote.search(data[:4], k=5, filter={"group": [1, 2]}) == local.search(
            data[:4], k=5, filter={"group": [1, 2]}
        )
        remote.delete([5])
        assert len(remote) == 299
        remote.close()
        reopened = QdrantIndex.load(url=server.url, collection="docs")
        assert reopened.spec == SPEC and reopened.matryoshka_dims == (8,)
        reopened.close()
        created = next(
            body
            for method, path, body in server.requests
            if method == "PUT" and path == "/collections/docs"
        )
    assert created["metadata"]["llmvec"]["spec"]["model"] == "test-vectors"
    assert set(created["vectors"]) == {"dim8", "full"}


def test_collection_without_spec_is_refused(tmp_path: Path) -> None:
    client = QdrantClient(":memory:")
    from qdrant_client import models

    client.create_collection(
        "foreign", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    with pytest.raises(ValueError, match="was not created by llmvec"):
        QdrantIndex(spec=SPEC, client=client, collection="foreign")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        QdrantIndex.load(client=client, collection="missing")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"quantization": "product"},
            ValueError,
            r"quantization 'product'; allowed: \[None, 'binary', 'int8'\]",
        ),
        ({"matryoshka_dims": [32]}, ValueError, "between 1 and 31"),
        ({"matryoshka_dims": [8, 8]}, ValueError, "duplicate matryoshka_dims"),
        ({"engine": "edge"}, ValueError, "give path="),
        ({"engine": "rocks"}, ValueError, r"unknown engine 'rocks'; allowed: \['client', 'edge'\]"),
        ({"url": "http://127.0.0.1:1", "location": ":memory:"}, ValueError, "at most one"),
        ({"collection": ""}, ValueError, "invalid collection name"),
        ({"oversample": 0}, ValueError, "oversample"),
    ],
)
def test_bad_settings(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        QdrantIndex(spec=SPEC, **kwargs)


@pytest.mark.parametrize("engine", ["path", "edge"])
def test_bad_input_changes_nothing(tmp_path: Path, data: np.ndarray, engine: str) -> None:
    index = _fill(_open(engine, tmp_path), data[:30])
    index.save()
    root = tmp_path / ("qdrant" if engine == "path" else "edge")
    before = index.search(data[0], k=5)
    for call, message in [
        (lambda: index.add_embeddings(data[:2, :8]), "dimension 8"),
        (lambda: index.add_embeddings(data[:2], ids=["x", "x"]), "duplicate ids"),
        (lambda: index.add_embeddings(data[:1], ids=[None]), "invalid id None"),
        (lambda: index.add_embeddings(data[:1], ids=[{"a": 1}]), "invalid id"),
        (lambda: index.add_embeddings(data[:1], metadata=[{"when": object()}]), "JSON"),
        (lambda: index.search(data[0], k=0), "k must be a positive integer"),
        (lambda: index.search(data[0], filter={"group": 1.5}), "str, int or bool"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    after = index.search(data[0], k=5)
    assert len(index) == 30
    # Same hits; scores to float32 rounding (qdrant-client's local mode may sum in another order).
    assert [(h.id, h.text, h.metadata) for h in after] == [
        (h.id, h.text, h.metadata) for h in before
    ]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], rel=1e-6)
    index.close()
    snapshot = _files(root)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an llmvec Qdrant index"):
        QdrantIndex(spec=SPEC, path=foreign, engine="client" if engine == "path" else "edge")
    assert _files(foreign) == {"notes.txt": b"keep me"}
    with pytest.raises(ValueError, match="holds a Qdrant index for engine"):
        QdrantIndex(spec=SPEC, path=root, engine="edge" if engine == "path" else "client")
    with pytest.raises(FileNotFoundError):
        QdrantIndex.load(tmp_path / "missing")
    assert _files(root) == snapshot


def test_example_script_runs_offline() -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "qdrant_binary_index.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stored as binary" in result.stdout
    assert "honeybees.md#0" in result.stdout and "tides.md#0" in result.stdout
