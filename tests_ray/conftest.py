"""Fixtures for the Ray tests: STS-B sentences and their single-process vectors, Ray clusters
started (and stopped) by the tests, and a loopback stand-in Qdrant server.

These tests start real Ray clusters on this machine, so they live apart from ``tests/`` and run
with ``scripts/test_ray.sh``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
# `ray start` clusters require a token (kept in ~/.ray/auth_token); drivers must ask for it.
os.environ.setdefault("RAY_AUTH_MODE", "token")

ROOT = Path(__file__).resolve().parents[1]
# The stand-in Qdrant server of the main suite (a Qdrant server cannot be installed here).
sys.path.insert(0, str(ROOT / "tests"))

from qdrant_server import FakeQdrant, fake_qdrant  # noqa: E402

from llmvec import Encoder  # noqa: E402
from llmvec.evaluation import load_sts  # noqa: E402

STS_FILE = ROOT.parent / "shared" / "data" / "stsbenchmark" / "sts-train.csv"
SENTENCES = 600
MODEL = "all-minilm-l6-v2"
#: Object store of each test cluster: small, the machine is shared.
OBJECT_STORE_BYTES = 200 * 1024**2
#: Cosine that vectors from Ray must reach against the single-process encoder's.
MIN_COSINE = 0.9999


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """The first sentences of STS-B's first 600 training pairs (ids are their positions)."""
    if not STS_FILE.is_file():
        pytest.fail(f"STS-B data missing: {STS_FILE}")
    return [pair.sentence1 for pair in load_sts(STS_FILE)[:SENTENCES]]


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    return Encoder(MODEL)


@pytest.fixture(scope="session")
def reference(minilm: Encoder, sentences: list[str]) -> np.ndarray:
    """The single-process Encoder's vectors of :func:`sentences`, row i for id i."""
    vectors: np.ndarray = minilm.encode_documents(sentences)
    return vectors


def assert_same_vectors(ids: list[int], vectors: np.ndarray, reference: np.ndarray) -> None:
    """Every id once, and each vector within :data:`MIN_COSINE` of the reference row."""
    assert sorted(ids) == list(range(len(reference))), "ids missing or duplicated"
    order = np.argsort(ids)
    joined = np.asarray(vectors, dtype=np.float32)[order]
    cosines = (joined * reference).sum(axis=1) / (
        np.linalg.norm(joined, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() > MIN_COSINE, f"lowest cosine {cosines.min()} at id {cosines.argmin()}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """Ray started inside this process with 2 CPUs, shut down after the module."""
    import ray

    ray.init("local", num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A separate ``ray start --head`` cluster (2 CPUs); yields its address.

    ``--block`` keeps the head process in the foreground: stopping it (SIGTERM to the process
    group this fixture started) stops that cluster's processes and no other Ray on the machine.
    """
    port = free_port()
    log = (tmp_path_factory.mktemp("ray-head") / "head.log").open("w")
    ray_command = str(Path(sys.executable).with_name("ray"))
    # `ray start` requires the token to exist already; this creates it only when missing.
    subprocess.run([ray_command, "get-auth-token", "--generate"], check=True, capture_output=True)
    command = [
        ray_command,
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=2",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    # On SIGTERM the head drains its node first, 30 s by default: nothing runs by then.
    environment = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "5"}
    head = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_port(port, head, timeout=180)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        _forget_cluster(port)


def _forget_cluster(port: int) -> None:
    """Remove Ray's note of the current cluster if it names the one just stopped (`ray stop`
    would, but it stops every Ray on the machine); a stale note sends ``ray.init()`` there."""
    note = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    with contextlib.suppress(OSError):
        if note.read_text().strip().endswith(f":{port}"):
            note.unlink()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            # The GCS answers before the raylet is up: give the node a moment to register.
            time.sleep(3)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the Ray head did not open port {port} within {timeout} s")


@pytest.fixture()
def qdrant_server() -> Iterator[FakeQdrant]:
    """A loopback stand-in for a Qdrant server (real qdrant-client REST calls, answered by
    qdrant-client's embedded engine): Ray workers write to it through ``url=``."""
    with fake_qdrant() as server:
        yield server


def stored_vectors(server: FakeQdrant, collection: str) -> tuple[list[Any], np.ndarray]:
    """The llmvec ids and full vectors of every point in a stand-in server's collection."""
    ids: list[Any] = []
    vectors: list[list[float]] = []
    offset = None
    while True:
        points, offset = server.local.scroll(
            collection, limit=1000, offset=offset, with_vectors=True, with_payload=True
        )
        for point in points:
            assert point.payload is not None and isinstance(point.vector, dict)
            ids.append(point.payload["llmvec_id"])
            vectors.append(point.vector["full"])  # type: ignore[arg-type]
        if offset is None:
            return ids, np.asarray(vectors, dtype=np.float32)
