"""BM25 (sparse) and hybrid search in every store: real FAISS (bm25s), qdrant-client's embedded
mode, Qdrant Edge and the url= path (against the loopback stand-in server), with WordLlama's
static encoder for the dense side. Fusion is compared with a plain RRF written here."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_server import fake_qdrant

from llmvec import Encoder
from llmvec.index import FaissIndex, Hit, QdrantIndex
from llmvec.index import faiss as faiss_module
from llmvec.index.base import BaseIndex
from llmvec.index.bm25 import (
    BM25Settings,
    analyzer,
    document_weights,
    query_weights,
    term_id,
)
from llmvec.index.fusion import DEPTH, candidates, reciprocal_rank_fusion
from llmvec.spec import EmbeddingSpec

STORES = ["faiss", "faiss-hnsw", "qdrant-memory", "qdrant-path", "qdrant-edge", "qdrant-server"]
TEXTS = {
    0: "Fixing cars and trucks at the local garage",
    1: "Automobile insurance premium rates rise again",
    2: "A recipe for chocolate cake with vanilla frosting",
    3: "Baking sourdough bread at home",
    4: "The mitochondria is the powerhouse of the cell",
    5: "Photosynthesis converts sunlight into chemical energy in chloroplasts",
    6: "Quarterly earnings of the automobile maker beat forecasts",
    7: "Zygomorphic flowers attract specialised pollinators",
    8: "Automobile stocks fell on Monday",
}
TOPICS = {0: "cars", 1: "cars", 2: "food", 3: "food", 4: "bio", 5: "bio", 6: "money", 7: "bio"}
TOPICS[8] = "money"
QUERIES = ["automobile repair", "zygomorphic blossoms", "baking a cake", "energy of the cell"]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    """WordLlama's static model: real dense vectors in milliseconds."""
    return Encoder("wordllama", backend="static")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with fake_qdrant() as running:
        yield running.url


def _open(store: str, root: Path, encoder: Encoder, server: str, **options: object) -> BaseIndex:
    if store == "faiss":
        return FaissIndex(encoder, **options)  # type: ignore[arg-type]
    if store == "faiss-hnsw":
        return FaissIndex(encoder, kind="hnsw", **options)  # type: ignore[arg-type]
    if store == "qdrant-memory":
        return QdrantIndex(encoder, **options)  # type: ignore[arg-type]
    if store == "qdrant-path":
        return QdrantIndex(encoder, path=root / "qdrant", **options)  # type: ignore[arg-type]
    if store == "qdrant-edge":
        return QdrantIndex(encoder, path=root / "edge", engine="edge", **options)  # type: ignore[arg-type]
    collection = f"c{abs(hash(root)) % 10**9}"  # one server for the module: a collection each
    return QdrantIndex(encoder, collection, url=server, **options)  # type: ignore[arg-type]


def _fill(index: BaseIndex, texts: dict[int, str] = TEXTS) -> BaseIndex:
    ids = list(texts)
    index.add(
        [texts[i] for i in ids],
        ids=ids,
        metadata=[{"topic": TOPICS.get(i, "other"), "year": 2000 + i} for i in ids],
    )
    return index


@pytest.fixture(params=STORES)
def index(
    request: pytest.FixtureRequest, tmp_path: Path, encoder: Encoder, server: str
) -> Iterator[BaseIndex]:
    opened = _fill(_open(request.param, tmp_path, encoder, server))
    yield opened
    opened.close()


def _ids(hits: list[Hit]) -> list[object]:
    return [hit.id for hit in hits]


def _reference_rrf(
    rankings: list[list[Hit]], weights: list[float], rrf_k: float, k: int
) -> list[tuple[object, float]]:
    """Plain weighted RRF: sum of weight / (rrf_k + rank), ranks from 1; ties by first sight."""
    scores: dict[object, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (rrf_k + rank)
    ordered = sorted(scores.items(), key=lambda item: -item[1])
    return ordered[:k]


def _assert_same(hits: list[Hit], expected: list[tuple[object, float]]) -> None:
    assert _ids(hits) == [doc_id for doc_id, _ in expected]
    assert [h.score for h in hits] == pytest.approx([score for _, score in expected], rel=1e-6)


# ---------------------------------------------------------------------------------- analyzer
def test_the_analyzer_folds_case_drops_stopwords_and_stems() -> None:
    terms = analyzer("english").terms("The CATS were running_fast, isn't it? Café 3D")
    assert terms == ["cat", "run", "fast", "café", "3d"]
    assert analyzer(None).terms("The cats were running") == ["cats", "running"]
    assert term_id("cat") == zlib.crc32(b"cat") and 0 <= term_id("café") < 2**32


def test_document_values_are_bm25s_term_frequency_part() -> None:
    settings = BM25Settings(k1=1.2, b=0.75, avg_len=4.0)
    terms = ["cat", "cat", "mat", "sat"]  # length 4 = avg_len: norm = k1
    weights = document_weights(terms, settings)
    expected = {term_id("cat"): 2 * 2.2 / (2 + 1.2), term_id("mat"): 2.2 / 2.2}
    expected[term_id("sat")] = 1.0
    assert dict(zip(weights.indices, weights.values, strict=True)) == pytest.approx(expected)
    assert weights.indices == sorted(weights.indices)
    query = query_weights(["cat", "cat", "mat"])
    assert sorted(query.indices) == sorted({term_id("cat"), term_id("mat")})
    assert query.values == [1.0, 1.0]


def test_bm25_settings_are_checked_and_round_trip() -> None:
    settings = BM25Settings(k1=0.9, b=0.4, avg_len=120, stemmer=None)
    assert BM25Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    for bad in ({"k1": -1}, {"b": 1.5}, {"avg_len": 0}, {"stemmer": "klingon"}, {"k1": True}):
        with pytest.raises(ValueError, match="BM25"):
            BM25Settings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must have"):
        BM25Settings.from_dict({"k1": 1.2})


# ---------------------------------------------------------------------------------- fusion
def test_fusion_matches_a_plain_rrf() -> None:
    dense = [Hit(i, 1.0 - i / 10, f"t{i}") for i in (3, 1, 4, 5)]
    sparse = [Hit(i, 9.0 - i, f"t{i}") for i in (5, 9, 3)]
    fused = reciprocal_rank_fusion([dense, sparse], [1.0, 2.0], 60.0, 10)
    _assert_same(fused, _reference_rrf([dense, sparse], [1.0, 2.0], 60.0, 10))
    assert fused[0] == Hit(5, pytest.approx(1 / 64 + 2 / 61), "t5")
    assert [h.id for h in reciprocal_rank_fusion([dense, sparse], [1.0, 1.0], 0.0, 2)] == [3, 5]
    # 1 and "1" are different documents
    mixed = reciprocal_rank_fusion([[Hit(1, 1.0)], [Hit("1", 1.0)]], [1.0, 1.0], 60.0, 5)
    assert [h.id for h in mixed] == [1, "1"]
    assert candidates(5) == DEPTH and candidates(500) == 500


# ---------------------------------------------------------------------------------- searching
def test_sparse_search_finds_the_document_sharing_rare_terms(index: BaseIndex) -> None:
    hits = index.search("zygomorphic blossoms", k=3, mode="sparse")
    assert _ids(hits) == [7]  # the only document sharing a term
    assert hits[0].text == TEXTS[7] and hits[0].metadata == {"topic": "bio", "year": 2007}
    assert hits[0].score > 0
    automobile = index.search("automobile", k=10, mode="sparse")
    assert sorted(_ids(automobile)) == [1, 6, 8]  # the texts that hold the word
    scores = [h.score for h in automobile]
    assert scores == sorted(scores, reverse=True)
    assert _ids(automobile)[0] == 8  # the shortest of the three
    assert index.search("the of and", k=3, mode="sparse") == []  # stopwords only: no term
    assert index.search("xylophone", k=3, mode="sparse") == []  # in no document
    batch = index.search(["zygomorphic", "sourdough", "xylophone"], k=2, mode="sparse")
    assert [_ids(hits) for hits in batch] == [[7], [3], []]
    assert index.search([], k=2, mode="sparse") == []


def test_hybrid_is_the_weighted_rrf_of_dense_and_sparse_lists(index: BaseIndex) -> None:
    for weights, rrf_k in (((1.0, 1.0), 60), ((2.0, 0.5), 60), ((1.0, 3.0), 5)):
        for query in QUERIES:
            dense = index.search(query, k=candidates(4))
            sparse = index.search(query, k=candidates(4), mode="sparse")
            expected = _reference_rrf([dense, sparse], list(weights), rrf_k, 4)
            hybrid = index.search(query, k=4, mode="hybrid", weights=weights, rrf_k=rrf_k)
            _assert_same(hybrid, expected)
            assert all(h.text == TEXTS[h.id] for h in hybrid)  # type: ignore[index]
    assert index.search("baking a cake", k=10) == index.search("baking a cake", k=10, mode="dense")


def test_weights_move_the_order_toward_their_list(index: BaseIndex) -> None:
    query = "automobile repair"
    dense = index.search(query, k=len(TEXTS))
    sparse = index.search(query, k=len(TEXTS), mode="sparse")
    assert dense[0].id != sparse[0].id  # the garage for meaning, a word match for BM25

    def order(weights: tuple[float, float], rrf_k: float = 60) -> list[object]:
        return _ids(index.search(query, k=len(TEXTS), mode="hybrid", weights=weights, rrf_k=rrf_k))

    assert order((1.0, 0.0)) == _ids(dense)  # a list whose weight is 0 does not count
    assert order((0.0, 1.0)) == _ids(sparse)
    assert order((4.0, 1.0), rrf_k=1)[0] == dense[0].id
    assert order((1.0, 4.0), rrf_k=1)[0] == sparse[0].id
    assert order((1.0, 1.0)) != order((1.0, 0.0))


def test_filters_hold_in_sparse_and_hybrid_search(index: BaseIndex) -> None:
    # Many documents that outrank the wanted ones on the word, none of them matching.
    fillers = {100 + i: f"automobile automobile spare part {i}" for i in range(40)}
    _fill(index, fillers)
    unfiltered = index.search("automobile", k=2, mode="sparse")
    assert all(h.id in fillers for h in unfiltered)
    hits = index.search("automobile", k=2, mode="sparse", filter={"topic": "money"})
    assert sorted(_ids(hits)) == [6, 8]  # k hits when k documents match
    ranged = index.search("automobile", k=5, mode="sparse", filter={"year": {"lt": 2005}})
    assert _ids(ranged) == [1]
    for weights in ((1.0, 1.0), (0.0, 1.0), (1.0, 0.0)):
        fused = index.search(
            "automobile", k=4, mode="hybrid", weights=weights, filter={"topic": ["money", "food"]}
        )
        assert fused and all(TOPICS[h.id] in ("money", "food") for h in fused)  # type: ignore[index]
    both = index.search("automobile", k=3, mode="hybrid", filter={"topic": "money"})
    assert sorted(_ids(both)) == [6, 8]
    assert index.search("automobile", k=3, mode="sparse", filter={"topic": "none"}) == []


def test_deletes_and_replacements_update_bm25(index: BaseIndex) -> None:
    index.delete([7])
    assert index.search("zygomorphic", k=5, mode="sparse") == []
    assert 7 not in _ids(index.search("zygomorphic flowers", k=9, mode="hybrid"))
    index.add(["Zygomorphic orchids in the greenhouse"], ids=[3], metadata=[{"topic": "bio"}])
    assert _ids(index.search("zygomorphic", k=5, mode="sparse")) == [3]
    assert index.search("sourdough", k=5, mode="sparse") == []  # the replaced text is gone
    assert len(index) == len(TEXTS) - 1
    # A document stored without text has no BM25 entry, and replaces one that had.
    index.add_embeddings(np.ones((1, index.dim), dtype=np.float32), ids=[3])
    assert index.search("zygomorphic orchids", k=5, mode="sparse") == []


@pytest.mark.parametrize("engine", ["client", "edge"])
def test_faiss_and_qdrant_give_the_same_bm25_scores(
    tmp_path: Path, encoder: Encoder, engine: str
) -> None:
    # With the corpus' own average length, Qdrant's term weights times its IDF are bm25s's
    # scores (times k1 + 1, which FaissIndex applies).
    average = float(np.mean([len(analyzer("english").terms(t)) for t in TEXTS.values()]))
    faiss_index = _fill(FaissIndex(encoder))
    settings = BM25Settings(avg_len=average)
    with QdrantIndex(encoder, path=tmp_path / "q", engine=engine, sparse=settings) as qdrant:
        _fill(qdrant)
        for query in [*QUERIES, "automobile", "automobile garage chocolate"]:
            expected = faiss_index.search(query, k=len(TEXTS), mode="sparse")
            found = qdrant.search(query, k=len(TEXTS), mode="sparse")
            # The same documents with the same scores; equal scores may come in either order.
            scores = {h.id: h.score for h in expected}
            assert {h.id: h.score for h in found} == pytest.approx(scores, rel=1e-5)
            assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


# ---------------------------------------------------------------------------------- persistence
def test_faiss_reload_gives_the_same_sparse_results(tmp_path: Path, encoder: Encoder) -> None:
    index = _fill(FaissIndex(encoder))
    index.delete([5])
    index.add(["Sourdough starters need flour and water"], ids=[3], metadata=[{"topic": "food"}])
    index.save(tmp_path / "store")
    names = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert [n for n in names if n.startswith("bm25.")] == [
        "bm25.data.npy",
        "bm25.indices.npy",
        "bm25.indptr.npy",
        "bm25.labels.npy",
        "bm25.params.json",
        "bm25.vocab.json",
    ]
    for name in names:
        if name.endswith(".npy"):
            np.load(tmp_path / "store" / name, allow_pickle=False)  # no pickle anywhere
    loaded = FaissIndex.load(tmp_path / "store", encoder)
    assert loaded.bm25 == BM25Settings()
    queries = [*QUERIES, "sourdough flour", "photosynthesis"]
    for mode in ("sparse", "hybrid"):
        before = index.search(queries, k=5, mode=mode)  # type: ignore[arg-type]
        after = loaded.search(queries, k=5, mode=mode)  # type: ignore[arg-type]
        assert [[(h.id, h.score) for h in row] for row in after] == [
            [(h.id, h.score) for h in row] for row in before
        ]
    assert loaded.search("photosynthesis", k=3, mode="sparse") == []
    # Changes after loading rebuild the index, and a second save round-trips too.
    loaded.add(["Photosynthesis in algae"], ids=[50])
    assert _ids(loaded.search("photosynthesis", k=3, mode="sparse")) == [50]
    loaded.save(tmp_path / "store")
    again = FaissIndex.load(tmp_path / "store", encoder)
    assert _ids(again.search("photosynthesis", k=3, mode="sparse")) == [50]


def test_faiss_refuses_bm25_files_that_disagree_with_the_documents(
    tmp_path: Path, encoder: Encoder
) -> None:
    _fill(FaissIndex(encoder)).save(tmp_path / "store")
    labels = tmp_path / "store" / "bm25.labels.npy"
    np.save(labels, np.load(labels)[:-1], allow_pickle=False)
    with pytest.raises(ValueError, match="BM25 files"):
        FaissIndex.load(tmp_path / "store")
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=r"bm25\.labels\.npy"):
        FaissIndex.load(tmp_path / "store")


@pytest.mark.parametrize("engine", ["client", "edge"])
def test_qdrant_copies_keep_their_bm25_vectors(
    tmp_path: Path, encoder: Encoder, engine: str
) -> None:
    settings = BM25Settings(avg_len=12.0)
    with QdrantIndex(encoder, path=tmp_path / "a", engine=engine, sparse=settings) as index:
        _fill(index)
        index.optimize()  # Edge: segments with their sparse index
        before = index.search(QUERIES, k=4, mode="hybrid")
        index.save(tmp_path / "copy")
    with QdrantIndex.load(tmp_path / "copy", encoder) as copy:
        assert copy.bm25 == settings
        after = copy.search(QUERIES, k=4, mode="hybrid")
        assert [_ids(row) for row in after] == [_ids(row) for row in before]
        for row, expected in zip(after, before, strict=True):
            _assert_same(row, [(h.id, h.score) for h in expected])
    with QdrantIndex(encoder, path=tmp_path / "a", engine=engine) as reopened:
        assert reopened.bm25 == settings  # sparse=None opens what is stored


# ---------------------------------------------------------------------------------- old stores
def _faiss_without_sparse_setting(path: Path) -> None:
    """Make a saved store look like one written before BM25 vectors existed."""
    sidecar = path / faiss_module.MARKER
    state = json.loads(sidecar.read_text())
    del state["settings"]["sparse"]
    sidecar.write_text(json.dumps(state))
    for file in path.glob("bm25.*"):
        file.unlink()


def test_stores_without_bm25_search_dense_and_explain_sparse(
    tmp_path: Path, encoder: Encoder
) -> None:
    _fill(FaissIndex(encoder)).save(tmp_path / "old")
    _faiss_without_sparse_setting(tmp_path / "old")
    old = FaissIndex.load(tmp_path / "old", encoder)
    assert old.bm25 is None and len(old.search("baking a cake", k=3)) == 3
    for mode in ("sparse", "hybrid"):
        with pytest.raises(ValueError, match=r"no BM25 vectors.*Re-index .* into a new store"):
            old.search("baking a cake", k=3, mode=mode)  # type: ignore[arg-type]
    old.save(tmp_path / "old")  # stays a dense store
    assert FaissIndex.load(tmp_path / "old").bm25 is None

    dense_only = _fill(FaissIndex(encoder, sparse=False))
    with pytest.raises(ValueError, match="no BM25 vectors"):
        dense_only.search("cake", mode="sparse")


def test_qdrant_collections_without_bm25_search_dense_and_explain_sparse(
    tmp_path: Path, encoder: Encoder
) -> None:
    # A collection as an llmvec before hybrid search made it: no sparse vector, no "sparse".
    client = QdrantClient(":memory:")
    config = {
        "format": "llmvec.qdrant",
        "format_version": 1,
        "spec": encoder.spec.to_dict(),
        "quantization": None,
        "matryoshka_dims": [],
    }
    client.create_collection(
        "old",
        vectors_config={
            "full": models.VectorParams(size=encoder.dim, distance=models.Distance.COSINE)
        },
        metadata={"llmvec": config},
    )
    old = _fill(QdrantIndex(encoder, "old", client=client))
    assert old.bm25 is None and len(old.search("baking a cake", k=3)) == 3
    with pytest.raises(ValueError, match="no BM25 vectors"):
        old.search("baking a cake", k=3, mode="hybrid")
    with pytest.raises(ValueError, match="exists with other settings: sparse"):
        QdrantIndex(encoder, "old", client=client, sparse=True)

    edge = tmp_path / "edge"
    QdrantIndex(encoder, path=edge, engine="edge", sparse=False).close()
    with QdrantIndex(encoder, path=edge, engine="edge") as reopened:
        assert reopened.bm25 is None
        _fill(reopened)
        with pytest.raises(ValueError, match="no BM25 vectors"):
            reopened.search("cake", mode="sparse")


# ---------------------------------------------------------------------------------- checks
def test_modes_weights_and_rrf_k_are_checked_before_any_work() -> None:
    # No encoder: any encoding would fail with another error (the spec names no model).
    index = FaissIndex(spec=EmbeddingSpec(model="not-a-model", dim=8))
    index.add_embeddings(np.eye(8, dtype=np.float32), texts=[f"word{i}" for i in range(8)])
    cases = [
        ({"mode": "bm25"}, "unknown search mode 'bm25'"),
        ({"mode": "hybrid", "weights": (1.0,)}, "weights must be a pair"),
        ({"mode": "hybrid", "weights": "ab"}, "weights must be a pair"),
        ({"mode": "hybrid", "weights": (1.0, -1.0)}, "finite numbers >= 0"),
        ({"mode": "hybrid", "weights": (1.0, float("nan"))}, "finite numbers >= 0"),
        ({"mode": "hybrid", "weights": (0, 0)}, "cannot both be 0"),
        ({"mode": "hybrid", "rrf_k": -1}, "rrf_k must be"),
        ({"mode": "hybrid", "rrf_k": True}, "rrf_k must be"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            index.search("word1", k=3, **options)  # type: ignore[arg-type]
    for mode in ("sparse", "hybrid"):
        with pytest.raises(ValueError, match=f"mode='{mode}' needs text queries"):
            index.search(np.eye(8, dtype=np.float32)[0], k=3, mode=mode)  # type: ignore[arg-type]
    assert _ids(index.search("word3", k=3, mode="sparse")) == [index.ids[3]]  # no encoder needed
