"""Metadata filters (values, any-of, number ranges) pushed into every engine, compared with a
plain filter-then-rank reference; and the stored float vectors an index gives back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from index_data import clustered

from llmvec.index import FaissIndex, QdrantIndex
from llmvec.index.base import BaseIndex
from llmvec.spec import EmbeddingSpec

DIM = 16
SPEC = EmbeddingSpec(model="test-vectors", dim=DIM)
STORES = ["faiss-flat", "faiss-int8", "faiss-binary", "qdrant-memory", "qdrant-edge"]


def _open(store: str, root: Path) -> BaseIndex:
    if store == "faiss-flat":
        return FaissIndex(spec=SPEC)
    if store == "faiss-int8":
        return FaissIndex(spec=SPEC, precision="int8", rescore_dtype="float32")
    if store == "faiss-binary":
        return FaissIndex(spec=SPEC, precision="binary", oversample=100.0)
    if store == "qdrant-memory":
        return QdrantIndex(spec=SPEC)
    return QdrantIndex(spec=SPEC, path=root / "edge", engine="edge")


def _metadata(i: int) -> dict[str, object]:
    return {"ext": ["md", "txt", "pdf"][i % 3], "modified": 1000.0 + i, "size": i * 10}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(120, DIM, seed=5)


def _reference(data: np.ndarray, query: np.ndarray, keep: list[int], k: int) -> list[int]:
    """Filter first, then rank the kept rows by inner product: what a filtered search returns."""
    scores = data[keep] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [keep[i] for i in order]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(
    ("filter", "rule"),
    [
        ({"ext": "pdf"}, lambda i: i % 3 == 2),
        ({"ext": ["md", "pdf"]}, lambda i: i % 3 != 1),
        ({"modified": {"gte": 1100.0}}, lambda i: i >= 100),
        ({"modified": {"gt": 1010, "lte": 1020}}, lambda i: 10 < i <= 20),
        ({"ext": "txt", "size": {"lt": 300}}, lambda i: i % 3 == 1 and i * 10 < 300),
    ],
)
def test_filters_return_exactly_the_matching_documents(
    tmp_path: Path, data: np.ndarray, store: str, filter: dict, rule
) -> None:
    index = _open(store, tmp_path)
    index.add_embeddings(
        data, ids=list(range(len(data))), metadata=[_metadata(i) for i in range(120)]
    )
    keep = [i for i in range(120) if rule(i)]
    k = min(8, len(keep))
    hits = index.search(data[7], k=8, filter=filter)
    # k hits when k documents match (no post-filtering), each one matching.
    assert len(hits) == k
    assert all(rule(int(hit.id)) for hit in hits)
    if store in ("faiss-flat", "qdrant-memory", "qdrant-edge", "faiss-int8"):
        assert [hit.id for hit in hits] == _reference(data, data[7], keep, 8)
    index.close()


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"modified": {"after": 3}}, "allowed: ['gt', 'gte', 'lt', 'lte']"),
        ({"modified": {}}, "allowed"),
        ({"modified": {"gte": "2026"}}, "must be a number"),
        ({"ext": []}, "allows no value"),
    ],
)
def test_bad_filters_are_refused(filter: dict, message: str) -> None:
    index = FaissIndex(spec=SPEC)
    index.add_embeddings(np.eye(DIM, dtype=np.float32)[:2], ids=["a", "b"])
    with pytest.raises((TypeError, ValueError), match=message.replace("[", r"\[")):
        index.search(np.eye(DIM, dtype=np.float32)[0], k=1, filter=filter)


@pytest.mark.parametrize("store", [*STORES, "faiss-hnsw", "faiss-ivf"])
def test_stored_documents_are_the_added_ones(tmp_path: Path, data: np.ndarray, store: str) -> None:
    if store == "faiss-hnsw":
        index: BaseIndex = FaissIndex(spec=SPEC, kind="hnsw")
    elif store == "faiss-ivf":
        index = FaissIndex(spec=SPEC, kind="ivf", nlist=4)
    else:
        index = _open(store, tmp_path)
    ids = [f"doc-{i}" for i in range(len(data))]
    index.add_embeddings(
        data,
        ids=ids,
        texts=[f"text {i}" for i in range(len(data))],
        metadata=[{"n": i} for i in range(len(data))],
    )
    stored = index.stored(["doc-9", "doc-2"])
    assert stored.texts == ["text 9", "text 2"]
    assert stored.metadata == [{"n": 9}, {"n": 2}]
    got = stored.vectors
    if store in ("faiss-binary", "faiss-ivf"):
        # Packed bits with float16 rescoring vectors, IVF lists without a direct map: no exact
        # float vectors to give back; the caller encodes again.
        assert got is None
    else:
        assert got is not None
        np.testing.assert_allclose(got, data[[9, 2]], rtol=1e-6, atol=1e-6)
    with pytest.raises(KeyError, match="missing"):
        index.stored(["missing"])
    index.close()


def test_a_server_store_gives_back_its_documents(data: np.ndarray) -> None:
    """Through the url= path against the loopback stand-in server (the only mocked part)."""
    from qdrant_server import fake_qdrant

    with fake_qdrant() as server:
        index = QdrantIndex(spec=SPEC, url=server.url, collection="docs")
        index.add_embeddings(data[:5], ids=list(range(5)), texts=[f"t{i}" for i in range(5)])
        stored = index.stored([3, 1])
        assert stored.texts == ["t3", "t1"] and stored.vectors is not None
        np.testing.assert_allclose(stored.vectors, data[[3, 1]], atol=1e-6)
        index.close()
