"""Incremental indexing (llmvec.sync) on real stores: an unchanged folder encodes nothing, edits,
additions, deletions and moves do only their part, and a run killed with SIGKILL at any point
leaves a store that the next run turns into exactly a fresh build of the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmvec import Encoder, cli
from llmvec.index.base import BaseIndex
from llmvec.index.stores import create_store, finish_store, open_store, parse_store
from llmvec.spec import EmbeddingSpec
from llmvec.sync import Chunking, FolderSync, stored_files

STORES = ["faiss", "qdrant", "qdrant-edge"]
CHUNKING = Chunking(max_tokens=24, overlap=4)


class CountingEncoder:
    """The tiny model's encoder, counting the documents it encodes."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.documents = 0

    @property
    def spec(self) -> EmbeddingSpec:
        return self.inner.spec

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def document_token_budget(self) -> int:
        return self.inner.document_token_budget

    def encode_queries(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
        return self.inner.encode_queries(texts, **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
        self.documents += 1 if isinstance(texts, str) else len(texts)
        return self.inner.encode_documents(texts, **kwargs)


@pytest.fixture(scope="module")
def tiny(tiny_llama: Path) -> Encoder:
    return Encoder(str(tiny_llama), dtype="float32")


def _folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / "bees.md").write_text(
        "# Bees\n\nHoney bees dance to tell their sisters where flowers are.\n\n"
        "## Hives\n\nA hive keeps one queen and thousands of workers through the winter.\n"
    )
    (docs / "tides.txt").write_text("Tides rise and fall twice a day, pulled by the Moon. " * 6)
    (docs / "notes" / "bread.rst").write_text(
        "Bread\n=====\n\nSourdough needs a starter of flour and water.\n"
    )
    (docs / "notes" / "empty.txt").write_text("")
    return docs


def _sync(index: BaseIndex, encoder: CountingEncoder, docs: Path, **options: Any):
    return FolderSync(index, CHUNKING, lambda: encoder, **options).run(docs)


def _build(kind: str, path: Path, encoder: CountingEncoder, docs: Path) -> None:
    store = parse_store(f"{kind}:{path}")
    index = create_store(store, encoder, "float32")
    _sync(index, encoder, docs)
    finish_store(index, store)
    index.close()


def _contents(kind: str, path: Path) -> dict[str, tuple[str | None, dict[str, Any], np.ndarray]]:
    """Every stored chunk: text, metadata and vector."""
    index = open_store(parse_store(f"{kind}:{path}"))
    ids = [doc_id for doc_id, _ in index.metadata_items()]
    stored = index.stored(ids)
    index.close()
    assert stored.vectors is not None
    return {
        str(i): (text, meta, vector)
        for i, text, meta, vector in zip(
            ids, stored.texts, stored.metadata, stored.vectors, strict=True
        )
    }


def _assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, (text, meta, vector) in expected.items():
        assert actual[key][0] == text and actual[key][1] == meta, key
        np.testing.assert_allclose(actual[key][2], vector, rtol=1e-5, atol=1e-5)


def _fresh(kind: str, root: Path, tiny: Encoder, docs: Path) -> dict:
    path = root / f"fresh-{kind}"
    _build(kind, path, CountingEncoder(tiny), docs)
    return _contents(kind, path)


@pytest.mark.parametrize("kind", STORES)
def test_changes_are_followed_and_only_they_are_encoded(
    tmp_path: Path, tiny: Encoder, kind: str
) -> None:
    docs = _folder(tmp_path)
    path = tmp_path / "store"
    store = parse_store(f"{kind}:{path}")
    encoder = CountingEncoder(tiny)

    def run(**options: Any):
        index = create_store(store, None, "float32", spec=encoder.spec)
        report = _sync(index, encoder, docs, **options)
        finish_store(index, store)
        index.close()
        return report

    first = run()
    assert first.added == 3 and first.chunks_encoded == encoder.documents > 3
    # The empty file has no chunks; nothing else is stored.
    assert {Path(s).name for s in _manifest(store)} == {"bees.md", "tides.txt", "bread.rst"}

    # Unchanged: nothing encoded, nothing written, nothing removed.
    encoder.documents = 0
    again = run()
    assert (again.unchanged, again.chunks_encoded, again.chunks_removed) == (3, 0, 0)
    assert encoder.documents == 0

    # Touched, same bytes: the stored vectors are reused under fresh metadata.
    os.utime(docs / "tides.txt", (1_700_000_000, 1_700_000_000))
    touched = run()
    assert (touched.reused, touched.chunks_encoded, encoder.documents) == (1, 0, 0)

    # Edited (shorter), added, deleted, moved: only the edit and the new file are encoded.
    (docs / "tides.txt").write_text("Tides follow the Moon.")
    (docs / "volcano.md").write_text("# Volcanoes\n\nMagma rises through the crust.\n")
    (docs / "notes" / "bread.rst").rename(docs / "bread-moved.rst")
    before = _manifest(store)
    changed = run()
    assert (changed.changed, changed.added, changed.reused) == (1, 1, 1)
    assert encoder.documents == changed.chunks_encoded == 2
    moved = _manifest(store)[(docs / "bread-moved.rst").as_posix()]
    assert moved.sha256 == before[(docs / "notes" / "bread.rst").as_posix()].sha256
    assert (docs / "notes" / "bread.rst").as_posix() not in _manifest(store)
    _assert_same(_contents(kind, path), _fresh(kind, tmp_path, tiny, docs))

    # Deleted, kept with prune=False, then removed.
    (docs / "volcano.md").unlink()
    kept = run(prune=False)
    assert kept.removed == 0 and (docs / "volcano.md").as_posix() in _manifest(store)
    pruned = run()
    assert pruned.removed == 1 and (docs / "volcano.md").as_posix() not in _manifest(store)
    _assert_same(_contents(kind, path), _fresh(kind, tmp_path / "again", tiny, docs))


def _manifest(store: Any) -> dict:
    index = open_store(store)
    try:
        return stored_files(index)
    finally:
        index.close()


def test_other_chunking_chunks_again(tmp_path: Path, tiny: Encoder) -> None:
    docs = _folder(tmp_path)
    index = create_store(parse_store(f"faiss:{tmp_path / 's'}"), tiny, "float32")
    encoder = CountingEncoder(tiny)
    FolderSync(index, CHUNKING, lambda: encoder).run(docs)
    encoder.documents = 0
    report = FolderSync(index, Chunking(max_tokens=12, overlap=2), lambda: encoder).run(docs)
    assert report.changed == 3 and encoder.documents == report.chunks_encoded > 0
    assert {m["chunking"] for _, m in index.metadata_items()} == {"tokens=12;overlap=2"}


def test_no_chunk_is_longer_than_the_encoder_reads(tmp_path: Path, tiny: Encoder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(" ".join(f"word{n}" for n in range(3000)))
    short = Encoder(tiny.model_name, dtype="float32", max_length=32)
    index = create_store(parse_store(f"faiss:{tmp_path / 's'}"), short, "float32")
    FolderSync(index, Chunking(max_tokens=256, overlap=8), lambda: short).run(docs)
    texts = [index.stored([i]).texts[0] for i, _ in index.metadata_items()]
    assert len(texts) > 10
    assert not any(t.truncated for t in short.tokenize([str(text) for text in texts]))


def test_checkpoints_keep_the_work_of_a_run_that_dies(tmp_path: Path, tiny: Encoder) -> None:
    docs = _folder(tmp_path)
    store = parse_store(f"faiss:{tmp_path / 's'}")

    class Dies(CountingEncoder):
        def encode_documents(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
            if self.documents >= 4:
                raise RuntimeError("the power went out")
            return super().encode_documents(texts, **kwargs)

    dying = Dies(tiny)
    index = create_store(store, tiny, "float32")
    sync = FolderSync(
        index, CHUNKING, lambda: dying, batch_size=4, checkpoint=lambda: index.save(store.path),
        checkpoint_seconds=0,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="power"):
        sync.run(docs)
    index.close()
    saved = len(open_store(store))
    assert saved >= 4
    encoder = CountingEncoder(tiny)
    index = create_store(store, tiny, "float32")
    report = FolderSync(index, CHUNKING, lambda: encoder).run(docs)
    finish_store(index, store)
    index.close()
    # The checkpointed files are not encoded again, and the store is the folder's.
    assert report.unchanged >= 1 and encoder.documents < report.chunks_stored
    _assert_same(_contents("faiss", tmp_path / "s"), _fresh("faiss", tmp_path, tiny, docs))


# ---------------------------------------------------------------------- SIGKILL
_KILLER = """
import os, signal, sys
from llmvec import cli
from llmvec.index.base import BaseIndex
from llmvec.index import storage

target, after = sys.argv[1], int(sys.argv[2])
calls = 0

def killing(original):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapper

if target == "add":
    BaseIndex.add_embeddings = killing(BaseIndex.add_embeddings)
elif target == "delete":
    BaseIndex.delete = killing(BaseIndex.delete)
elif target == "save":
    storage._exchange = killing(storage._exchange)
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("kind", STORES)
def test_a_killed_run_is_completed_by_the_next(tmp_path: Path, tiny_llama: Path, kind: str) -> None:
    docs = _folder(tmp_path)
    path = tmp_path / "store"
    arguments = ["index", str(docs), "--store", f"{kind}:{path}", "--model", str(tiny_llama)]
    arguments += [
        "--dtype",
        "float32",
        "--chunk-tokens",
        "24",
        "--overlap",
        "4",
        "--batch-size",
        "1",
    ]
    if kind == "qdrant":
        # An embedded-mode folder is signed when llmvec closes it: a killed run leaves it
        # unsigned, and opening it again takes the user's word (see test_store_safety.py).
        arguments.append("--trust-store")
    # A first full build, then changes, then runs killed at several points of the next one (in
    # their own processes); the build and the run that finishes the job run in this one.
    assert cli.main(arguments) == 0
    (docs / "tides.txt").write_text("Tides follow the Moon. " * 3)
    (docs / "new.md").write_text("# New\n\nA new file with a few words in it.\n\n" * 4)
    (docs / "bees.md").unlink()
    # After the first write, after the third, before the deletions, and (FAISS) inside the save.
    points = [("add", 1), ("add", 3), ("delete", 0)]
    for target, after in points + ([("save", 0)] if kind == "faiss" else []):
        killed = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_KILLER), target, str(after), *arguments],
            capture_output=True,
        )
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr.decode()[-2000:]
    assert cli.main(arguments) == 0
    encoder = Encoder(str(tiny_llama), dtype="float32")
    _assert_same(_contents(kind, path), _fresh(kind, tmp_path, encoder, docs))
