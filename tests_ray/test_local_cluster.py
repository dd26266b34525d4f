"""On Ray started in this process (``ray.init(num_cpus=2)``): vectors equal the single-process
Encoder's, a worker that dies mid-run leaves Qdrant exact, FAISS shards merge into the
single-process index, and bad input fails before anything is written."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import ray.cloudpickle
from conftest import MODEL, FakeQdrant, assert_same_vectors, stored_vectors

from llmvec import Encoder, FaissIndex, QdrantIndex
from llmvec.index.faiss import merge
from llmvec.ray import (
    Columns,
    EmbedBatch,
    WriteQdrant,
    embed,
    write_faiss_shards,
    write_index,
    write_qdrant,
)
from llmvec.ray.embed import actor_pool

pytestmark = pytest.mark.usefixtures("local_ray")
# The crashing writer below is defined here: ship it to the workers by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def corpus(sentences: list[str], **columns: str) -> ray.data.Dataset:
    """The sentences as a dataset: ``id`` (position) and ``text`` columns, or renamed ones."""
    id_name, text_name = columns.get("id", "id"), columns.get("text", "text")
    return ray.data.from_items([{id_name: i, text_name: s} for i, s in enumerate(sentences)])


def test_embed_matches_the_single_process_encoder(
    sentences: list[str], reference: np.ndarray
) -> None:
    rows = embed(corpus(sentences), {"model": MODEL}, concurrency=2, batch_size=100).take_all()
    ids = [int(row["id"]) for row in rows]
    assert_same_vectors(ids, np.stack([row["vector"] for row in rows]), reference)
    assert all(row["text"] == sentences[int(row["id"])] for row in rows)


def test_map_batches_pandas_with_a_spec_and_column_names(
    minilm: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    dataset = corpus(sentences[:300], id="doc", text="body")
    rows = dataset.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "encoder": minilm.spec.to_json(),
            "text_column": "body",
            "id_column": "doc",
            "vector_column": "emb",
        },
        compute=actor_pool(1),
        batch_size=64,
        batch_format="pandas",
    ).take_all()
    assert set(rows[0]) == {"doc", "body", "emb"}
    ids = [int(row["doc"]) for row in rows]
    assert_same_vectors(ids, np.stack([row["emb"] for row in rows]), reference[:300])


def test_write_index_streams_into_qdrant_edge_in_the_driver(
    tmp_path: Path, minilm: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    # Qdrant Edge (the real engine) locks its directory to this process: the workers return
    # vectors and the driver writes them.
    texts = sentences[:300]
    with QdrantIndex(minilm, path=tmp_path / "edge", engine="edge") as index:
        assert write_index(corpus(texts), {"model": MODEL}, index, concurrency=2) == len(texts)
        index.optimize()
        assert len(index) == len(texts)
        hits = index.search(reference[:5], k=1)
        assert [hit[0].text for hit in hits] == texts[:5]
        assert all(hit[0].score > 0.9999 for hit in hits)
    reopened = QdrantIndex.load(tmp_path / "edge", encoder=minilm)
    assert len(reopened) == len(texts)
    reopened.close()


class CrashOnceAfterWriting(WriteQdrant):
    """A writer whose process dies right after its second upsert, once per marker file."""

    def __init__(self, *args: Any, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker = Path(marker)
        self.calls = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        written = super().__call__(batch)
        self.calls += 1
        if self.calls == 2 and not self.marker.exists():
            self.marker.touch()
            os._exit(1)  # the points of this batch are written, its task is not finished
        return written


def test_a_worker_dying_mid_run_leaves_qdrant_exact(
    qdrant_server: FakeQdrant,
    tmp_path: Path,
    minilm: Encoder,
    sentences: list[str],
    reference: np.ndarray,
) -> None:
    # The composition write_qdrant uses (embed, then writer actors), with a writer that dies;
    # Ray restarts the actor and retries the task, which upserts the same uuid5 point ids again.
    marker = tmp_path / "crashed"
    QdrantIndex(spec=minilm.spec, url=qdrant_server.url, collection="corpus").close()
    vectors = embed(corpus(sentences), {"model": MODEL}, concurrency=1, batch_size=100)
    written = vectors.map_batches(
        CrashOnceAfterWriting,
        fn_constructor_kwargs={
            "spec": minilm.spec,
            "url": qdrant_server.url,
            "collection": "corpus",
            "marker": str(marker),
        },
        compute=actor_pool(1),
        batch_size=100,
        batch_format="numpy",
        num_cpus=0,
    )
    total = sum(int(batch["written"].sum()) for batch in written.iter_batches())
    assert marker.exists(), "the writer never crashed: the fault was not exercised"
    assert total == len(sentences)
    assert qdrant_server.local.count("corpus").count == len(sentences)
    ids, stored = stored_vectors(qdrant_server, "corpus")
    assert_same_vectors(ids, stored, reference)
    with QdrantIndex.load(url=qdrant_server.url, collection="corpus", encoder=minilm) as index:
        assert len(index) == len(sentences) and index.spec == minilm.spec


def test_faiss_shards_merge_into_the_single_process_index(
    tmp_path: Path, minilm: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    shards = write_faiss_shards(
        corpus(sentences), MODEL, tmp_path / "shards", shard_size=150, concurrency=2
    )
    assert len(shards) >= 4
    merged = merge(shards)
    single = FaissIndex(minilm)
    single.add(sentences, ids=list(range(len(sentences))))
    assert merged.spec == single.spec and len(merged) == len(single) == len(sentences)
    queries = reference[::100]
    for got, want in zip(merged.search(queries, k=5), single.search(queries, k=5), strict=True):
        assert [hit.score for hit in got] == pytest.approx([hit.score for hit in want], abs=1e-4)
        # STS-B repeats some sentences: equal texts tie, in either order of their ids.
        assert [hit.text for hit in got] == [hit.text for hit in want]
    merged.save(tmp_path / "merged")
    loaded = FaissIndex.load(tmp_path / "merged", encoder=minilm)
    assert len(loaded) == len(sentences)
    binary = merge(shards, precision="binary")
    assert binary.spec == FaissIndex(minilm, precision="binary").spec


@pytest.mark.parametrize(
    ("rows", "encoder", "error", "message"),
    [
        ([{"id": 1, "body": "a"}], {"model": MODEL}, ValueError, r"no column \['text'\]"),
        (
            [{"id": 1, "text": "a"}, {"id": 2, "text": None}],
            {"model": MODEL},
            TypeError,
            "id=2: column 'text' holds NoneType",
        ),
        ([{"id": 1, "text": 5}], {"model": MODEL}, TypeError, "id=1: column 'text' holds int"),
        ([{"id": 1.5, "text": "a"}], {"model": MODEL}, ValueError, "invalid id 1.5"),
        (
            [{"id": 1, "text": "a"}],
            {"model": "/no/such/model"},
            ValueError,
            "cannot build an Encoder from",
        ),
    ],
    ids=["missing-column", "null-text", "int-texts", "float-ids", "bad-encoder"],
)
def test_bad_input_fails_before_anything_is_written(
    qdrant_server: FakeQdrant,
    rows: list[dict[str, Any]],
    encoder: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        write_qdrant(
            ray.data.from_items(rows), encoder, qdrant_server.url, columns=Columns(), writers=1
        )
    assert [r for r in qdrant_server.requests if r[0] != "GET"] == [], "something was written"


def test_actors_take_their_vectors_from_an_llmvec_server(
    minilm: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    from llmvec.ray import EncoderConfig
    from llmvec.serving.app import build_app
    from llmvec.serving.server import running

    with running(build_app(minilm)) as (url, _):
        assert EncoderConfig.of(url) == EncoderConfig(server=url)
        rows = embed(corpus(sentences[:300]), url, concurrency=2, batch_size=50).take_all()
        ids = [int(row["id"]) for row in rows]
        assert_same_vectors(ids, np.stack([row["vector"] for row in rows]), reference[:300])
        other = minilm.spec.replace(pooling="last_token")
        with pytest.raises(ValueError, match="pooling"):
            EncoderConfig(spec=other, server=url).build()


def test_cli_index_on_ray_through_a_server(
    tmp_path: Path, minilm: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    from llmvec.cli import main
    from llmvec.serving.app import build_app
    from llmvec.serving.server import running

    folder = tmp_path / "docs"
    folder.mkdir()
    for number, text in enumerate(sentences[:40]):
        (folder / f"{number:04d}.txt").write_text(text + "\n", encoding="utf-8")
    store = tmp_path / "faiss"
    with running(build_app(minilm)) as (url, _):
        argv = ["index", str(folder), "--ray", "--server", url, "--store", f"faiss:{store}"]
        assert main(argv) == 0
    index = FaissIndex.load(store, encoder=minilm)  # the stored spec is the server's: MiniLM's
    assert len(index) == 40
    hits = index.search(reference[:3], k=1)
    assert [hit[0].text for hit in hits] == sentences[:3]
    assert all(hit[0].score > 0.9999 for hit in hits)
