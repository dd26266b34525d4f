"""Writers that are killed or that collide: saves killed with SIGKILL at each of their file-system
steps, a second writer process on each kind of store, readers during a save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llmvec
from llmvec import cli
from llmvec.index.storage import (
    StoreBusyError,
    StoreConflictError,
    lock_file,
    staging_folders,
    writer_lock,
)
from llmvec.spec import EmbeddingSpec

SPEC = EmbeddingSpec(model="test-vectors", dim=8)

#: Run in a child process: open the FAISS store at argv[1] (or start one), add documents
#: argv[2]..argv[3], save, with every file-system step counted; the step numbered argv[4] kills
#: the process (SIGKILL) just before it ("before") or just after it ("after", argv[5]).
_KILLED_SAVE = textwrap.dedent(
    """
    import os, shutil, signal, sys
    import numpy as np
    import llmvec.index.storage as storage
    from llmvec import FaissIndex
    from llmvec.spec import EmbeddingSpec

    path, first, last, kill_at, when = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4]), sys.argv[5]
    steps = [0]

    def counted(function):
        def step(*args, **kwargs):
            steps[0] += 1
            if steps[0] == kill_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = function(*args, **kwargs)
            if steps[0] == kill_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return step

    spec = EmbeddingSpec(model="test-vectors", dim=8)
    index = FaissIndex.load(path) if os.path.isdir(path) else FaissIndex(spec=spec)
    vectors = np.random.default_rng(first).normal(size=(last - first, 8)).astype("float32")
    index.add_embeddings(vectors, ids=[f"doc{i}" for i in range(first, last)])
    os.replace = counted(os.replace)
    shutil.rmtree = storage.shutil.rmtree = counted(shutil.rmtree)
    storage._exchange = counted(storage._exchange)
    storage._fsync_tree = counted(storage._fsync_tree)
    index.save(path)
    print(steps[0])
    """
)


def _killed_save(path: Path, first: int, last: int, kill_at: int, when: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(path), str(first), str(last), str(kill_at), when],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout.strip()


def _ids(path: Path) -> set[str]:
    return {str(i) for i in llmvec.FaissIndex.load(path).ids}


def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, steps = _killed_save(store, 0, 20, 0, "never")
    assert code == 0
    old = _ids(store)
    new = old | {f"doc{i}" for i in range(20, 30)}
    # A clean run of the second save, to count its steps (on a copy, not the store under test).
    code, steps = _killed_save(tmp_path / "count", 0, 20, 0, "never")
    code, steps = _killed_save(tmp_path / "count", 20, 30, 0, "never")
    assert code == 0 and int(steps) >= 4
    outcomes = set()
    for kill_at in range(1, int(steps) + 1):
        for when in ("before", "after"):
            code, _ = _killed_save(store, 20, 30, kill_at, when)
            assert code == -signal.SIGKILL
            assert store.is_dir(), f"store missing after a kill {when} step {kill_at}"
            found = _ids(store)  # loads: the store is whole
            assert found in (old, new), f"a kill {when} step {kill_at} left {len(found)} ids"
            outcomes.add(found == new)
            if found == new:  # start the next round from the old store again
                index = llmvec.FaissIndex.load(store)
                index.delete([f"doc{i}" for i in range(20, 30)])
                index.save(store)
    assert outcomes == {False, True}  # kills fell both before and after the swap
    # The next save removes what killed saves left beside the store.
    code, _ = _killed_save(store, 20, 30, 0, "never")
    assert code == 0 and _ids(store) == new
    assert staging_folders(store) == []
    assert sorted(os.listdir(tmp_path)) == [".count.lock", ".store.lock", "count", "store"]


def test_readers_see_one_save_or_the_other(tmp_path: Path) -> None:
    """Searches in a loop while another process saves again and again: every load is whole."""
    store = tmp_path / "store"
    index = llmvec.FaissIndex(spec=SPEC)
    index.add_embeddings(np.eye(8, dtype=np.float32), ids=[f"doc{i}" for i in range(8)])
    index.save(store)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import numpy as np
                from llmvec import FaissIndex
                index = FaissIndex.load({str(store)!r})
                for round in range(40):
                    index.add_embeddings(
                        np.random.default_rng(round).normal(size=(50, 8)).astype("float32"),
                        ids=[f"r{{round}}-{{i}}" for i in range(50)],
                    )
                    index.save({str(store)!r})
                """
            ),
        ]
    )
    sizes = set()
    try:
        while writer.poll() is None:
            sizes.add(len(llmvec.FaissIndex.load(store)))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert sizes <= {8 + 50 * n for n in range(41)}


def test_a_second_saver_cannot_lose_the_first_ones_documents(tmp_path: Path) -> None:
    store = tmp_path / "store"
    llmvec.FaissIndex(spec=SPEC).save(store)
    first, second = llmvec.FaissIndex.load(store), llmvec.FaissIndex.load(store)
    first.add_embeddings(np.eye(8, dtype=np.float32), ids=[f"a{i}" for i in range(8)])
    second.add_embeddings(np.eye(8, dtype=np.float32), ids=[f"b{i}" for i in range(8)])
    first.save(store)
    with pytest.raises(StoreConflictError, match="another writer"):
        second.save(store)
    assert _ids(store) == {f"a{i}" for i in range(8)}
    first.add_embeddings(np.eye(8, dtype=np.float32)[:1], ids=["a8"])
    first.save(store)  # its own earlier save is no conflict
    assert len(_ids(store)) == 9


#: Run in a child process: hold the writer lock of argv[1] until killed.
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from llmvec.index.storage import writer_lock
    with writer_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(300)
    """
)


@pytest.fixture
def held(tmp_path: Path) -> object:
    """Start a process that holds a store's writer lock; returns a function taking the path."""
    holders: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> int:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
        )
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        return holder.pid

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.parametrize("scheme", ["faiss", "qdrant", "qdrant-edge"])
def test_a_second_writer_process_gets_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_llama: Path,
    held: object,
    scheme: str,
) -> None:
    monkeypatch.setenv("LLMVEC_STORE_KEY", str(tmp_path / "key"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Bees dance to share directions.")
    store = tmp_path / "store"
    address = f"{scheme}:{store}"
    assert cli.main(["index", str(docs), "--store", address, "--model", str(tiny_llama)]) == 0
    before = sorted(p.name for p in store.iterdir())
    (docs / "b.txt").write_text("Tides follow the Moon.")
    pid = held(store)  # type: ignore[operator]
    capsys.readouterr()
    code = cli.main(["index", str(docs), "--store", address, "--model", str(tiny_llama)])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        f"llmvec: error: store {str(store)!r} is being written by another process (pid {pid}); "
        "wait for it to finish\n"
    )
    assert sorted(p.name for p in store.iterdir()) == before
    if scheme == "faiss":  # a FAISS store is read without the lock
        assert cli.main(["search", "bees", "--store", address]) == 0
    else:  # both Qdrant engines hold their files exclusively: a search waits its turn
        assert cli.main(["search", "bees", "--store", address]) == 2
        assert "being written by another process" in capsys.readouterr().err


def test_two_index_runs_at_once_lose_nothing(tmp_path: Path, tiny_llama: Path) -> None:
    """Two real `llmvec index` processes on one FAISS store, started together: one writes, the
    other is refused (or, when the first had finished, both write); no document is lost."""
    store = tmp_path / "store"
    folders = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for number in range(30):
            (folder / f"{number}.txt").write_text(f"Document {number} of folder {name}.")
        folders.append(folder)
    command = [sys.executable, "-m", "llmvec.cli", "index", "--model", str(tiny_llama)]
    runs = [
        subprocess.Popen(
            [*command, str(folder), "--store", f"faiss:{store}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for folder in folders
    ]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    written = [folder for folder, (code, _) in zip(folders, results, strict=True) if code == 0]
    expected = {f"{(folder / f'{n}.txt').as_posix()}#0" for folder in written for n in range(30)}
    assert codes in ([0, 0], [0, 2]), results
    assert all("being written" in err for code, err in results if code == 2)
    assert _ids(store) == expected


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path: Path, held: object) -> None:
    store = tmp_path / "store"
    pid = held(store)  # type: ignore[operator]
    with pytest.raises(StoreBusyError, match=f"pid {pid}"), writer_lock(store):
        pass
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with writer_lock(store):
                break
        except StoreBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with writer_lock(store), writer_lock(store):  # re-entrant within one process
        assert lock_file(store).read_text().strip() == str(os.getpid())


def test_a_read_that_a_save_swaps_away_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save swaps the folder, then removes the old one: a reader holding the old folder can
    list it half removed (no marker). The read must start over on the new folder."""
    from llmvec.index import storage

    store, newer = tmp_path / "store", tmp_path / "newer"
    index = llmvec.FaissIndex(spec=SPEC)
    index.add_embeddings(np.eye(8, dtype=np.float32), ids=[f"doc{i}" for i in range(8)])
    index.save(store)
    index.add_embeddings(np.ones((1, 8), dtype=np.float32), ids=["doc8"])
    index.save(newer)
    real_listdir = os.listdir
    swapped: list[bool] = []

    def listdir_during_a_save(folder: Any) -> list[str]:
        if not swapped:
            swapped.append(True)
            aside = tmp_path / "aside"
            os.rename(store, aside)
            os.rename(newer, store)
            (aside / "llmvec-faiss.json").unlink()  # the old folder, half removed
        return real_listdir(folder)

    monkeypatch.setattr(storage.os, "listdir", listdir_during_a_save)
    assert len(llmvec.FaissIndex.load(store)) == 9
    assert swapped
