"""`llmvec index` on real folders: distinct ids across folders, chunks of shrunk and deleted files
removed, symlinks kept inside the folder, unreadable files listed, every user error one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import llmvec
from llmvec import cli


@pytest.fixture
def model(tiny_llama: Path) -> list[str]:
    return ["--model", str(tiny_llama), "--chunk-tokens", "40", "--overlap", "0"]


def _stored(store: Path) -> dict[str, str | None]:
    index = llmvec.FaissIndex.load(store)
    return {str(hit_id): index._documents[label][1] for hit_id, label in index._labels.items()}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_same_named_files_in_two_folders_both_stay(tmp_path: Path, model: list[str]) -> None:
    a = _write(tmp_path / "a" / "notes.txt", "Bees dance to share directions.")
    b = _write(tmp_path / "b" / "notes.txt", "Tides follow the Moon.")
    store = f"faiss:{tmp_path / 'store'}"
    assert cli.main(["index", str(a.parent), "--store", store, *model]) == 0
    assert cli.main(["index", str(b.parent), "--store", store, *model]) == 0
    stored = _stored(tmp_path / "store")
    assert stored == {
        f"{a.as_posix()}#0": "Bees dance to share directions.",
        f"{b.as_posix()}#0": "Tides follow the Moon.",
    }


def test_shrunk_and_deleted_files_leave_the_store(
    tmp_path: Path, model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    long = _write(docs / "long.txt", "\n\n".join(f"Paragraph number {n} here." for n in range(4)))
    gone = _write(docs / "sub" / "gone.md", "This file will be deleted.")
    kept = _write(docs / "kept.txt", "This one stays as it is.")
    other = _write(tmp_path / "other" / "elsewhere.txt", "Indexed from another folder.")
    store = f"faiss:{tmp_path / 'store'}"
    assert cli.main(["index", str(other.parent), "--store", store, *model]) == 0
    assert cli.main(["index", str(docs), "--store", store, *model]) == 0
    long_chunks = sum(1 for i in _stored(tmp_path / "store") if i.startswith(long.as_posix()))
    assert long_chunks >= 2 and len(_stored(tmp_path / "store")) == long_chunks + 3
    long.write_text("Paragraph number 0 here.")
    gone.unlink()
    capsys.readouterr()
    assert cli.main(["index", str(docs), "--store", store, *model, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["changed"], report["removed"]) == (1, 1)
    assert report["chunks_removed"] == long_chunks - 1 + 1
    assert sorted(_stored(tmp_path / "store")) == sorted(
        [f"{long.as_posix()}#0", f"{kept.as_posix()}#0", f"{other.as_posix()}#0"]
    )
    # One file given: only its own stale chunks go.
    long.write_text("\n\n".join(f"Paragraph number {n} here." for n in range(3)))
    assert cli.main(["index", str(long), "--store", store, *model]) == 0
    long.write_text("Paragraph number 0 here.")
    assert cli.main(["index", str(long), "--store", store, *model]) == 0
    assert len(_stored(tmp_path / "store")) == 3


def test_symlinks_out_of_the_folder_are_not_followed(
    tmp_path: Path, model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _write(tmp_path / "outside" / "secret.txt", "The password is swordfish.")
    docs = tmp_path / "docs"
    _write(docs / "a.txt", "An ordinary note.")
    (docs / "link.txt").symlink_to(secret)
    (docs / "folder").symlink_to(secret.parent, target_is_directory=True)
    store = f"faiss:{tmp_path / 'store'}"
    assert cli.main(["index", str(docs), "--store", store, *model]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 files:" in captured.err and "outside" in captured.err
    assert all("swordfish" not in text for text in _stored(tmp_path / "store").values())
    assert cli.main(["index", str(docs), "--store", store, *model, "--follow-symlinks"]) == 0
    assert sum("swordfish" in str(t) for t in _stored(tmp_path / "store").values()) == 2


def test_binary_and_undecodable_files_are_skipped_and_listed(
    tmp_path: Path, model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    good = _write(docs / "good.md", "Plain UTF-8 text, café.")
    (docs / "data.txt").write_bytes(b"\x00\x01\x02binary\xff" * 10)
    (docs / "latin.txt").write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    store = f"faiss:{tmp_path / 'store'}"
    assert cli.main(["index", str(docs), "--store", store, *model]) == 0
    captured = capsys.readouterr()
    assert "1 files:" not in captured.out and "3 files: 1 new" in captured.out
    lines = captured.err.strip().splitlines()
    assert lines[0] == "skipped 2 files:"
    assert any("data.txt: binary file" in line for line in lines)
    assert any("latin.txt: not utf-8 text" in line for line in lines)
    assert list(_stored(tmp_path / "store")) == [f"{good.as_posix()}#0"]
    assert cli.main(["index", str(docs), "--store", store, *model, "--encoding", "latin-1"]) == 0
    assert "Café au lait." in _stored(tmp_path / "store").values()


def test_a_huge_file_is_chunked_to_what_the_encoder_reads(tmp_path: Path, model: list[str]) -> None:
    """A 400 KB one-line file under max_length 64: every chunk fits, none is truncated."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "huge.txt").write_text("All work and no play makes a dull model. " * 10_000)
    store = f"faiss:{tmp_path / 'store'}"
    arguments = ["index", str(docs), "--store", store, *model[:2], "--chunk-tokens", "1000"]
    assert cli.main([*arguments, "--max-length", "64"]) == 0
    texts = [str(t) for t in _stored(tmp_path / "store").values()]
    encoder = llmvec.Encoder(model[1], max_length=64)
    assert len(texts) > 1000 and not any(t.truncated for t in encoder.tokenize(texts))
    first = ["All", "work", "and", "no", "play", "makes", "a", "dull", "model."]
    assert " ".join(texts).split()[: len(first)] == first


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["encode", "x", "--model", "a/missing/folder"], "does not exist"),
        (["encode", "x", "--device", "tpu"], "tpu"),
        (["index", "{docs}", "--store", "faiss:{store}", "--encoding", "klingon"], "klingon"),
        (["index", "{docs}", "--store", "qdrant+http://u:p@localhost/c"], "--api-key"),
        (["search", "x", "--store", "faiss:{store}"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_in_a_real_process(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    docs = tmp_path / "docs"
    _write(docs / "a.txt", "A note.")
    argv = [a.format(docs=docs, store=tmp_path / "store") for a in arguments]
    result = subprocess.run(
        [sys.executable, "-m", "llmvec.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmvec: error: "), result.stderr
    assert message in lines[0]
