"""On a separate ``ray start --head`` cluster, through ``llmvec index --ray ADDRESS``: a local
Qdrant store written by the driver, and a Qdrant server written by the workers, whose run is
killed midway and started again: the second run encodes what the first did not store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL, FakeQdrant, assert_same_vectors, stored_vectors
from qdrant_client import QdrantClient

from llmvec import Encoder, QdrantIndex


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, sentences: list[str]) -> Path:
    """One file per sentence: ``0000.txt`` ... (each one chunk)."""
    root = tmp_path_factory.mktemp("corpus")
    for number, sentence in enumerate(sentences):
        (root / f"{number:04d}.txt").write_text(sentence, encoding="utf-8")
    return root


def index_command(corpus: Path, address: str, store: str) -> list[str]:
    return [
        *(sys.executable, "-m", "llmvec.cli", "index", str(corpus), "--chunk-tokens", "256"),
        *("--ray", address, "--store", store, "--model", MODEL),
        *("--batch-size", "16", "--no-progress"),
    ]


def chunk_number(chunk_id: str) -> int:
    """``/path/to/corpus/0042.txt#0`` -> 42."""
    return int(Path(chunk_id.split("#")[0]).stem)


def test_cli_writes_a_local_store_from_the_driver(
    ray_cluster: str,
    corpus_dir: Path,
    tmp_path: Path,
    minilm: Encoder,
    reference: np.ndarray,
) -> None:
    store = tmp_path / "qdrant"
    result = subprocess.run(
        [*index_command(corpus_dir, ray_cluster, f"qdrant:{store}"), "--actors", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(reference)} chunks encoded" in result.stdout
    with QdrantIndex.load(store, encoder=minilm) as index:  # the spec check passes
        assert len(index) == len(reference) and index.spec == minilm.spec
    client = QdrantClient(path=str(store))
    try:
        points, _ = client.scroll("llmvec", limit=len(reference) + 1, with_vectors=True)
    finally:
        client.close()
    ids = [chunk_number(point.payload["llmvec_id"]) for point in points]  # type: ignore[index]
    vectors = np.asarray([point.vector["full"] for point in points])  # type: ignore[index]
    assert_same_vectors(ids, vectors, reference)


def test_a_killed_run_started_again_leaves_qdrant_exact(
    ray_cluster: str,
    corpus_dir: Path,
    qdrant_server: FakeQdrant,
    minilm: Encoder,
    reference: np.ndarray,
) -> None:
    command = index_command(corpus_dir, ray_cluster, f"qdrant+{qdrant_server.url}/corpus")
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        while _count(qdrant_server) == 0 and first.poll() is None:
            assert time.monotonic() < deadline, "no point was written in 600 s"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    written_before_kill = _count(qdrant_server)
    assert 0 < written_before_kill < len(reference), "the run was not killed midway"

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert qdrant_server.local.count("corpus").count == len(reference)
    ids, vectors = stored_vectors(qdrant_server, "corpus")
    assert_same_vectors([chunk_number(i) for i in ids], vectors, reference)
    with QdrantIndex.load(url=qdrant_server.url, collection="corpus", encoder=minilm) as index:
        assert len(index) == len(reference)


def _count(server: FakeQdrant) -> int:
    with server.lock:
        if not server.local.collection_exists("corpus"):
            return 0
        return server.local.count("corpus").count
