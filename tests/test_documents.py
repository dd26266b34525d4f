"""Reading a folder of documents: absolute chunk ids, symlinks, binary and non-UTF-8 files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmvec.documents import Loaded, Skipped, load_chunks


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _source(path: Path) -> str:
    return Path(os.path.abspath(path)).as_posix()


def _texts(loaded: Loaded) -> dict[str, str]:
    return {c.id: c.text for c in loaded.chunks}


def test_same_named_files_in_two_folders_get_distinct_ids(tmp_path: Path) -> None:
    first = _write(tmp_path / "a" / "notes.txt", "From a.")
    second = _write(tmp_path / "b" / "notes.txt", "From b.")
    a, b = load_chunks(tmp_path / "a"), load_chunks(tmp_path / "b")
    assert _texts(a) == {f"{_source(first)}#0": "From a."}
    assert _texts(b) == {f"{_source(second)}#0": "From b."}
    chunk = a.chunks[0]
    assert chunk.source == _source(first) and chunk.metadata == {"source": chunk.source, "chunk": 0}
    assert a.files == [_source(first)] and a.skipped == []


def test_ids_are_stable_across_runs_and_spellings_of_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "docs" / "sub" / "note.md", "First.\n\nSecond.")
    _write(tmp_path / "docs" / "top.txt", "Top.")
    _write(tmp_path / "docs" / ".hidden" / "secret.md", "skip me")
    _write(tmp_path / "docs" / "image.png", b"\x89PNG")
    loaded = load_chunks(tmp_path / "docs", 8)
    note = _source(tmp_path / "docs" / "sub" / "note.md")
    assert [(c.id, c.text) for c in loaded.chunks] == [
        (f"{note}#0", "First."),
        (f"{note}#1", "Second."),
        (f"{_source(tmp_path / 'docs' / 'top.txt')}#0", "Top."),
    ]
    assert load_chunks(tmp_path / "docs", 8) == loaded
    monkeypatch.chdir(tmp_path)
    assert load_chunks("docs", 8) == load_chunks("./docs/../docs", 8) == loaded


def test_a_single_file_is_read_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "README", "Just one.")
    monkeypatch.chdir(tmp_path)
    loaded = load_chunks("README")
    assert _texts(loaded) == {f"{_source(tmp_path / 'README')}#0": "Just one."}
    assert loaded.files == [_source(tmp_path / "README")]


def test_symlinks_out_of_the_folder_are_skipped_unless_followed(tmp_path: Path) -> None:
    secret = _write(tmp_path / "elsewhere" / "secret.txt", "Secret.")
    _write(tmp_path / "elsewhere" / "dir" / "deep.md", "Deep.")
    root = tmp_path / "root"
    own = _write(root / "own.txt", "Own.")
    (root / "link.txt").symlink_to(secret)
    (root / "linked_dir").symlink_to(tmp_path / "elsewhere" / "dir", target_is_directory=True)
    (root / "picture.png").symlink_to(secret)  # not a document: ignored, not listed

    loaded = load_chunks(root)
    assert loaded.files == [_source(own)] and _texts(loaded) == {f"{_source(own)}#0": "Own."}
    assert [s.path for s in loaded.skipped] == [
        _source(root / "link.txt"),
        _source(root / "linked_dir"),
    ]
    for skipped in loaded.skipped:
        assert "outside" in skipped.reason and "follow_symlinks=True" in skipped.reason

    followed = load_chunks(root, follow_symlinks=True)
    sources = [_source(root / "link.txt"), _source(root / "linked_dir" / "deep.md"), _source(own)]
    assert followed.files == sources and followed.skipped == []
    assert [c.text for c in followed.chunks] == ["Secret.", "Deep.", "Own."]


def test_symlinks_inside_the_folder_are_read_and_loops_are_cut(tmp_path: Path) -> None:
    real = _write(tmp_path / "real.txt", "Real.")
    _write(tmp_path / "sub" / "inner.md", "Inner.")
    (tmp_path / "alias.txt").symlink_to("real.txt")
    (tmp_path / "mirror").symlink_to("sub", target_is_directory=True)
    (tmp_path / "sub" / "loop").symlink_to("..", target_is_directory=True)
    (tmp_path / "dangling.md").symlink_to("nowhere.md")

    loaded = load_chunks(tmp_path)
    alias, mirrored = tmp_path / "alias.txt", tmp_path / "mirror" / "inner.md"
    assert loaded.files == [
        _source(p) for p in (alias, mirrored, real, tmp_path / "sub" / "inner.md")
    ]
    assert loaded.chunks[0].source == _source(alias)  # the link's own path, not its target's
    assert [c.text for c in loaded.chunks] == ["Real.", "Inner.", "Real.", "Inner."]
    reasons = {s.path: s.reason for s in loaded.skipped}
    assert reasons.keys() == {
        _source(tmp_path / "dangling.md"),
        _source(tmp_path / "mirror" / "loop"),
        _source(tmp_path / "sub" / "loop"),
    }
    assert "broken symlink" in reasons[_source(tmp_path / "dangling.md")]
    assert "loop" in reasons[_source(tmp_path / "sub" / "loop")]


def test_binary_and_non_utf8_files_are_skipped_with_their_reason(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.md", "Good.")
    binary = _write(tmp_path / "data.txt", b"GIF89a" + b"\0" * 4 + b"text")
    latin = _write(tmp_path / "cafe.txt", b"caf\xe9")
    loaded = load_chunks(tmp_path)
    assert loaded.files == [_source(good)] and [c.text for c in loaded.chunks] == ["Good."]
    assert loaded.skipped == [
        Skipped(
            _source(latin),
            "not utf-8 text: invalid byte 0xe9 at offset 3; pass encoding= to read it",
        ),
        Skipped(_source(binary), "binary file: NUL byte at offset 6"),
    ]
    read = load_chunks(tmp_path / "cafe.txt", encoding="latin-1")
    assert _texts(read) == {f"{_source(latin)}#0": "café"} and read.skipped == []


def test_a_utf8_bom_is_removed_and_other_encodings_are_read(tmp_path: Path) -> None:
    bom = _write(tmp_path / "bom.txt", "\ufeffHello.".encode())
    wide = _write(tmp_path / "wide.txt", "Wide text.".encode("utf-16"))
    assert _texts(load_chunks(bom)) == {f"{_source(bom)}#0": "Hello."}
    assert _texts(load_chunks(wide, encoding="utf-16")) == {f"{_source(wide)}#0": "Wide text."}
    assert load_chunks(wide).skipped[0].reason.startswith("binary file")
    with pytest.raises(LookupError, match="klingon"):
        load_chunks(tmp_path, encoding="klingon")


def test_empty_files_are_listed_without_chunks(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.txt", "")
    blank = _write(tmp_path / "blank.md", " \n\n \n")
    loaded = load_chunks(tmp_path)
    assert loaded == Loaded(chunks=[], files=[_source(blank), _source(empty)], skipped=[])


def test_special_files_are_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    loaded = load_chunks(tmp_path)
    assert loaded.files == [] and loaded.skipped == [
        Skipped(_source(tmp_path / "pipe.txt"), "not a regular file")
    ]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_files_and_folders_are_skipped(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.txt", "Good.")
    locked = _write(tmp_path / "locked.txt", "Locked.")
    closed = _write(tmp_path / "closed" / "inside.txt", "Inside.").parent
    locked.chmod(0)
    closed.chmod(0)
    try:
        loaded = load_chunks(tmp_path)
    finally:
        locked.chmod(0o644)
        closed.chmod(0o755)
    assert loaded.files == [_source(good)]
    assert loaded.skipped == [
        Skipped(_source(closed), "cannot read: Permission denied"),
        Skipped(_source(locked), "cannot read: Permission denied"),
    ]
