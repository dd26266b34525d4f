"""How local stores live on disk: one writer at a time, atomic saves, consistent reads.

* :func:`writer_lock`: an exclusive, non-blocking lock held by the one process that writes a
  store. It lives beside the store (``.NAME.lock`` in the parent folder), so it survives the
  store folder being swapped by a save, and a second writer gets :class:`StoreBusyError` naming
  the holder instead of silently overwriting the first one's work.
* :func:`atomic_directory`: a save writes a staging folder beside the target and swaps it in
  with one ``renameat2(RENAME_EXCHANGE)`` (Linux): at every instant the store path holds the old
  complete store or the new one. A save killed before or after the swap leaves a hidden staging
  folder, which the next writer removes.
* :func:`read_snapshot`: every file of one store, read from the same folder (through its file
  descriptor), so a reader never mixes the files of two saves.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2
_STAGING_SUFFIX = ".tmp"
#: How often a reader starts over when a save swapped the folder away while it was reading.
_SNAPSHOT_ATTEMPTS = 5


class StoreBusyError(BlockingIOError):
    """Another process holds the store's writer lock."""


class StoreConflictError(RuntimeError):
    """The store was saved by another writer since this index was loaded from it."""


def lock_file(store: Path) -> Path:
    """The lock file of the store at ``store``: ``.NAME.lock`` beside it."""
    store = Path(store).expanduser().absolute()
    return store.with_name(f".{store.name}.lock")


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, depth) in this process
_held_guard = threading.Lock()


@contextmanager
def writer_lock(store: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive writer lock of ``store`` (re-entrant within one process).

    Raises :class:`StoreBusyError`, naming the holder's pid, when another process holds it; the
    lock is released when the holder exits or is killed.
    """
    path = lock_file(Path(store))
    with _held_guard:
        if path in _held:
            descriptor, depth = _held[path]
            _held[path] = (descriptor, depth + 1)
        else:
            _held[path] = (_acquire(path, Path(store)), 1)
    try:
        yield
    finally:
        with _held_guard:
            descriptor, depth = _held[path]
            if depth > 1:
                _held[path] = (descriptor, depth - 1)
            else:
                del _held[path]
                os.close(descriptor)  # closing the descriptor releases the lock


def _acquire(path: Path, store: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise StoreBusyError(
                f"store {str(store)!r} is being written by another process (pid {holder}); "
                "wait for it to finish",
            ) from None
        raise
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor


def _exchange(source: Path, target: Path) -> bool:
    """Swap two existing paths in one step; ``False`` where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd = -100
    result = renameat2(at_cwd, os.fsencode(source), at_cwd, os.fsencode(target), _RENAME_EXCHANGE)
    if result != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL):  # no renameat2, or a file system without it
            return False
        raise OSError(code, os.strerror(code), str(target))
    return True


def staging_folders(target: Path) -> list[Path]:
    """Staging folders that saves of ``target`` left behind (killed before cleaning up)."""
    pattern = f".{target.name}.*{_STAGING_SUFFIX}"
    return sorted(path for path in target.parent.glob(pattern) if path.is_dir())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def refuse_foreign_folder(path: str | os.PathLike[str], marker: str, kind: str) -> None:
    """Refuse ``path`` as a save's target unless it is missing, an empty folder, or a folder
    holding ``marker`` (an earlier save); ``kind`` names what such a save is."""
    target = Path(path).expanduser()
    if target.exists() and not (
        target.is_dir() and ((target / marker).is_file() or not any(target.iterdir()))
    ):
        raise FileExistsError(
            f"{str(target)!r} exists and is not {kind} (no {marker}); refusing to overwrite it"
        )


@contextmanager
def atomic_directory(path: str | os.PathLike[str], marker: str) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success it replaces ``path`` in one step.

    ``path`` may be missing, an empty folder, or an earlier save (a folder holding ``marker``);
    anything else is refused before anything is written. The writer lock is held throughout,
    and staging folders of earlier killed saves are removed first. On error the staging folder
    is removed and ``path`` is left as it was.
    """
    target = Path(path).expanduser().absolute()
    refuse_foreign_folder(target, marker, "an llmvec index")
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target):
        for leftover in staging_folders(target):
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_STAGING_SUFFIX, dir=target.parent)
        )
        try:
            yield staging
            os.chmod(staging, 0o755)
            _fsync_tree(staging)
            if target.exists() and _exchange(staging, target):
                shutil.rmtree(staging)  # now the old store
            else:
                _replace_by_renames(staging, target)
            _fsync(target.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _replace_by_renames(staging: Path, target: Path) -> None:
    """Where folders cannot be swapped: move the old store into the staging folder's place,
    then the new one into the target's. A save killed in between leaves no store at ``target``
    and the old one in a staging folder; :func:`recover` puts it back."""
    if target.exists():
        retired = staging.with_name(f"{staging.name[: -len(_STAGING_SUFFIX)]}.old{_STAGING_SUFFIX}")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired)
    else:
        os.replace(staging, target)


def recover(target: Path, marker: str) -> None:
    """Put back the old store that a save killed between its two renames left aside (systems
    without folder swapping only; there the store path is briefly missing)."""
    if target.exists():
        return
    retired = [path for path in staging_folders(target) if path.stem.endswith(".old")]
    complete = [path for path in retired if (path / marker).is_file()]
    if complete:
        os.replace(complete[-1], target)


def write_json(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file, flushed to disk, and a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def parse_json(data: bytes, what: str, name: str) -> dict[str, Any]:
    """A JSON object from ``data``, with errors that say which store file is corrupt."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what}: {name} is corrupt ({error})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{what}: {name} is corrupt (not a JSON object)")
    return parsed


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, with errors that say which store file is missing or corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {str(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{what}: {str(path)!r} cannot be read ({error})") from None
    return parse_json(data, what, repr(str(path)))


def read_snapshot(root: Path, names: Sequence[str]) -> dict[str, bytes]:
    """The contents of ``names`` (those that exist) in the folder ``root``, all from one save.

    The folder is opened once and its files read through that descriptor. A save swaps the
    folder away and then removes the old one, so a read is kept only if the folder it read is
    still the one at ``root`` afterwards (else its files may have been half removed, the
    listing included); otherwise it starts over on the new one.
    """
    for _ in range(_SNAPSHOT_ATTEMPTS):
        folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            present = set(os.listdir(folder))
            contents = {}
            for name in names:
                if name in present:
                    with open(name, "rb", opener=_relative_to(folder)) as handle:
                        contents[name] = handle.read()
            read, now = os.fstat(folder), os.stat(root)
            if (read.st_dev, read.st_ino) == (now.st_dev, now.st_ino):
                return contents
        except FileNotFoundError:
            continue  # the old folder was removed by a save: read the new one
        finally:
            with contextlib.suppress(OSError):
                os.close(folder)
    raise OSError(f"{str(root)!r} kept changing while it was read; try again")


def _relative_to(folder: int) -> Any:
    """An ``open(..., opener=)`` that opens names relative to the folder descriptor."""

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, dir_fd=folder)

    return opener
