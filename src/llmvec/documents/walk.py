"""The files of a folder that a reader handles, without leaving the folder."""

from __future__ import annotations

import os
from pathlib import Path

from llmvec.documents.readers import SUPPORTED_SUFFIXES
from llmvec.documents.records import Skipped, cannot_read


def find_files(
    root: str | Path,
    *,
    follow_symlinks: bool = False,
    suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES,
) -> tuple[list[str], list[Skipped]]:
    """The files under ``root`` whose names end with one of ``suffixes`` (any case), as
    absolute POSIX paths in sorted order, and the symlinks, special files and folders left out;
    ``root`` itself if it is a file, whatever its name.

    Hidden files and folders are skipped silently; symlinks are kept under the link's own path,
    but those whose target lies outside ``root`` are left out unless ``follow_symlinks``, and
    so are broken ones and those that loop back to a folder above them.
    """
    top = os.path.abspath(os.path.expanduser(root))
    if os.path.isfile(top):
        return [Path(top).as_posix()], []
    if not os.path.isdir(top):
        raise FileNotFoundError(f"{str(root)!r} is neither a file nor a directory")
    wanted = tuple(s.lower() for s in suffixes)
    base = Path(os.path.realpath(top))
    files: list[str] = []
    skipped: list[Skipped] = []
    # Depth first in name order: each path with the real paths of the folders above it.
    stack: list[tuple[str, tuple[str, ...]]] = [(top, ())]
    while stack:
        path, above = stack.pop()
        is_dir = os.path.isdir(path)
        if not is_dir and not path.lower().endswith(wanted):
            continue
        link = os.path.islink(path)
        real = os.path.realpath(path) if link or is_dir else path
        reason = None
        if link and not os.path.exists(path):
            reason = f"broken symlink to {os.readlink(path)!r}"
        elif link and not follow_symlinks and not Path(real).is_relative_to(base):
            reason = f"symlink to {real!r}, outside {str(base)!r}; pass follow_symlinks=True"
        elif is_dir and real in above:
            reason = f"symlink loop back to {real!r}"
        elif not is_dir and not os.path.isfile(path):
            reason = "not a regular file"
        if reason is not None:
            skipped.append(Skipped(Path(path).as_posix(), reason))
        elif not is_dir:
            files.append(Path(path).as_posix())
        else:
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError as error:
                skipped.append(Skipped(Path(path).as_posix(), cannot_read(error)))
                continue
            inner = (*above, real)
            stack.extend((os.path.join(path, n), inner) for n in names if not n.startswith("."))
    return files, skipped
