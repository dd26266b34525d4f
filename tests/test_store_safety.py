"""Stores that could run code or leak secrets when opened: crafted qdrant-client folders (pickles),
credentials in server URLs, collection names that leave the store folder, edited spec names."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_server import fake_qdrant

import llmvec
from llmvec import cli
from llmvec.index.stores import parse_store
from llmvec.index.trust import UntrustedStoreError
from llmvec.spec import EmbeddingSpec

SPEC = EmbeddingSpec(model="test-vectors", dim=8)


@pytest.fixture(autouse=True)
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test signs with its own key (the user's real key is never touched)."""
    monkeypatch.setenv("LLMVEC_STORE_KEY", str(tmp_path / "key" / "store-key"))


class _Payload:
    """Unpickling this writes ``proof``: what an attacker's row would do."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.proof)!r}, 'w').write('ran')",))


def _crafted_store(folder: Path, proof: Path, marker: dict[str, object] | None) -> None:
    """A qdrant-client embedded folder whose one point row is a pickle that writes ``proof``;
    with ``marker``, an llmvec marker file forged beside it."""
    client = QdrantClient(path=str(folder))
    client.create_collection(
        "llmvec", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE)
    )
    client.close()
    database = folder / "collection" / "llmvec" / "storage.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO points (id, point) VALUES (?, ?)", ("x", pickle.dumps(_Payload(proof)))
        )
    if marker is not None:
        (folder / "llmvec-qdrant.json").write_text(json.dumps(marker))


FORGED = {"format": "llmvec.qdrant", "format_version": 1, "engine": "client"}


@pytest.mark.parametrize(
    "marker",
    [None, FORGED, {**FORGED, "signature": "0" * 64}],
    ids=["no-marker", "forged-marker", "forged-signature"],
)
def test_a_crafted_embedded_store_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], marker: dict[str, object] | None
) -> None:
    store, proof = tmp_path / "store", tmp_path / "proof"
    _crafted_store(store, proof, marker)
    code = cli.main(["search", "anything", "--store", f"qdrant:{store}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("llmvec: error:") and len(err.strip().splitlines()) == 1
    assert not proof.exists()
    with pytest.raises((UntrustedStoreError, FileNotFoundError, FileExistsError)):
        llmvec.QdrantIndex(spec=SPEC, path=store)
    with pytest.raises((UntrustedStoreError, FileNotFoundError)):
        llmvec.QdrantIndex.load(store)
    assert not proof.exists()


def test_the_payload_is_live_once_trusted(tmp_path: Path) -> None:
    """The same crafted store, opened with trust_store=True, does run the pickle: the refusal
    above is what keeps it from running."""
    store, proof = tmp_path / "store", tmp_path / "proof"
    _crafted_store(store, proof, FORGED)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client makes of the payload
        llmvec.QdrantIndex.load(store, trust_store=True).close()
    assert proof.read_text() == "ran"


def test_a_crafted_default_store_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain `llmvec search` in a folder holding a crafted `llmvec-store/`."""
    proof = tmp_path / "proof"
    _crafted_store(tmp_path / "llmvec-store", proof, FORGED)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["search", "anything"])
    err = capsys.readouterr().err
    assert code == 2 and "engine 'client'" in err and not proof.exists()


def test_llmvec_signs_its_embedded_stores(tmp_path: Path) -> None:
    store = tmp_path / "store"
    vectors = np.eye(8, dtype=np.float32)
    with llmvec.QdrantIndex(spec=SPEC, path=store) as index:
        index.add_embeddings(vectors, ids=list(range(8)))
    with llmvec.QdrantIndex.load(store) as index:  # signed on closing: opens again
        assert len(index) == 8
        index.delete([0])
    with llmvec.QdrantIndex.load(store) as index:
        assert len(index) == 7
    # Another program changes a file: refused, and trusted again only when asked.
    database = store / "collection" / "llmvec" / "storage.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM points WHERE rowid = (SELECT min(rowid) FROM points)")
    with pytest.raises(UntrustedStoreError, match="trust_store=True"):
        llmvec.QdrantIndex.load(store)
    with llmvec.QdrantIndex.load(store, trust_store=True) as index:
        assert len(index) == 6
    with llmvec.QdrantIndex.load(store) as index:  # re-signed by llmvec on closing
        assert len(index) == 6


def test_a_signature_made_with_another_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    llmvec.QdrantIndex(spec=SPEC, path=store).close()
    monkeypatch.setenv("LLMVEC_STORE_KEY", str(tmp_path / "other-user-key"))
    with pytest.raises(UntrustedStoreError):
        llmvec.QdrantIndex.load(store)


@pytest.mark.parametrize("name", [".", "..", "../escape", "a/b", "", ".hidden", "x" * 256])
def test_collection_names_stay_inside_the_store(tmp_path: Path, name: str) -> None:
    store = tmp_path / "inner" / "store"
    with pytest.raises(ValueError, match="invalid collection name"):
        llmvec.QdrantIndex(spec=SPEC, collection=name, path=store, engine="edge")
    assert not (tmp_path / "inner").exists()


def test_credentials_in_a_server_url_are_refused_and_never_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="--api-key") as refused:
        parse_store("qdrant+http://admin:hunter2@127.0.0.1:6333/docs")
    assert "hunter2" not in str(refused.value) and "admin" not in str(refused.value)
    code = cli.main(["search", "x", "--store", "qdrant+https://admin:hunter2@example.org/docs"])
    captured = capsys.readouterr()
    assert code == 2 and "hunter2" not in captured.out + captured.err


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_the_api_key_is_sent_as_qdrant_expects(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = np.eye(8, dtype=np.float32)
    with fake_qdrant(api_key="s3cret") as server:
        address = f"qdrant+{server.url}/docs"
        with pytest.raises(PermissionError, match="QDRANT_API_KEY"):
            llmvec.QdrantIndex(spec=SPEC, url=server.url, collection="docs")
        store = parse_store(address, api_key="s3cret")
        assert "s3cret" not in repr(store) + str(store)
        with llmvec.QdrantIndex(
            spec=SPEC, url=store.url, api_key=store.api_key, collection="docs"
        ) as index:
            index.add_embeddings(vectors, ids=list(range(8)))
        monkeypatch.setenv("QDRANT_API_KEY", "s3cret")
        assert parse_store(address).api_key == "s3cret"
        # The command line: the key from --api-key, a wrong one refused in one line.
        monkeypatch.delenv("QDRANT_API_KEY")
        code = cli.main(["search", "x", "--store", address, "--api-key", "wrong"])
        captured = capsys.readouterr()
        assert code == 2 and "refused" in captured.err and "wrong" not in captured.err
        assert set(server.api_keys) == {None, "s3cret", "wrong"}


def test_a_refused_connection_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = cli.main(["search", "x", "--store", f"qdrant+http://127.0.0.1:{port}/docs"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("llmvec: error: cannot reach the Qdrant server")
    assert len(err.strip().splitlines()) == 1


def test_index_and_search_accept_the_same_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_llama: Path
) -> None:
    """A sidecar whose model name alone was edited: both commands refuse it, the same way."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Bees dance to share directions.")
    store = tmp_path / "store"
    model = ["--model", str(tiny_llama)]
    assert cli.main(["index", str(docs), "--store", f"faiss:{store}", *model]) == 0
    assert cli.main(["search", "bees", "--store", f"faiss:{store}"]) == 0
    capsys.readouterr()
    sidecar = store / "llmvec-faiss.json"
    state = json.loads(sidecar.read_text())
    elsewhere = str(tmp_path / "elsewhere")
    state["spec"]["model"] = elsewhere
    sidecar.write_text(json.dumps(state))
    refusal = f"names model {elsewhere!r}, which is not here"
    assert cli.main(["index", str(docs), "--store", f"faiss:{store}", *model]) == 2
    assert refusal in capsys.readouterr().err
    assert cli.main(["search", "bees", "--store", f"faiss:{store}"]) == 2
    assert refusal in capsys.readouterr().err
