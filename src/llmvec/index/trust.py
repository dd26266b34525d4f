"""Which embedded-mode Qdrant folders may be opened: those llmvec wrote, unchanged since.

qdrant-client's embedded ``path=`` mode stores its points as pickles in SQLite and unpickles
them when it opens the folder, so opening a folder someone else crafted runs their code. llmvec
therefore signs every such folder when it closes it: an HMAC-SHA256, under a key only this
user can read, of every file's name and contents. A folder opens only when the signature
matches, or when the caller says it trusts the folder (``trust_store=True``, ``--trust-store``);
the folder is signed again when llmvec closes it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
#: Files a signature leaves out: llmvec's marker (which holds the signature) and the client's lock.
UNSIGNED = (".lock",)


class UntrustedStoreError(PermissionError):
    """An embedded-mode Qdrant folder that llmvec did not write, or that changed since."""


def key_file() -> Path:
    """The signing key: ``$LLMVEC_STORE_KEY`` or ``$XDG_CONFIG_HOME/llmvec/store-key``."""
    if os.environ.get("LLMVEC_STORE_KEY"):
        return Path(os.environ["LLMVEC_STORE_KEY"]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "llmvec" / "store-key"


def _key() -> bytes:
    """This user's signing key, created (readable by the user alone) on first use."""
    path = key_file()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"the llmvec store key {str(path)!r} is corrupt ({len(key)} bytes)")
    return key


def signature(root: Path, marker: str) -> str:
    """The HMAC of every file under ``root`` (names and contents) but ``marker`` and locks."""
    mac = hmac.new(_key(), digestmod=hashlib.sha256)
    entries = sorted(root.rglob("*"))
    links = any(path.is_symlink() for path in entries)
    files = [
        path
        for path in entries
        if path.is_file() and path.name not in (marker, *UNSIGNED) and not path.is_symlink()
    ]
    for path in files:
        relative = path.relative_to(root).as_posix().encode()
        mac.update(len(relative).to_bytes(8, "big") + relative)
        mac.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                mac.update(block)
    if links:
        mac.update(b"symlink")  # a link could point the client at another file: never valid
    return mac.hexdigest()


def check_trusted(root: Path, marker: str, signed: object, trust: bool) -> None:
    """Refuse to open ``root`` unless its ``signed`` value is its signature or ``trust``."""
    if trust:
        return
    if isinstance(signed, str) and hmac.compare_digest(signed, signature(root, marker)):
        return
    raise UntrustedStoreError(
        f"{str(root)!r} is a Qdrant embedded-mode store that llmvec did not write on this "
        "account, or that changed since (another program, or an llmvec run that was killed, "
        "wrote it). Its points are Python pickles, which can run code when loaded, so llmvec "
        "will not open it. If you trust its contents, open it with trust_store=True "
        "(--trust-store); or index into a qdrant-edge: or faiss: store, which load no pickle"
    )
