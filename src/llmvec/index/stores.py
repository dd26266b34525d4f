"""Store addresses, as the command line writes them, and opening an index from one.

=====================================  ==============================================
``faiss:PATH``                         a :class:`~llmvec.FaissIndex` directory
``qdrant:PATH``                        Qdrant embedded mode (qdrant-client) at PATH
``qdrant-edge:PATH``                   Qdrant Edge (the real engine, in-process) at PATH
``qdrant+http://HOST:PORT/COLLECTION``  a Qdrant server (``qdrant+https://`` too)
=====================================  ==============================================

Local Qdrant stores use the collection ``llmvec``. A server's API key is never part of the
address (it would be shown wherever the address is): it comes from ``api_key=`` (the command
line's ``--api-key``) or the ``QDRANT_API_KEY`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmvec.index.base import BaseIndex
from llmvec.index.specs import check_spec
from llmvec.index.storage import writer_lock

if TYPE_CHECKING:
    from llmvec.text_encoder import TextEncoder

SCHEMES = ("faiss", "qdrant", "qdrant-edge", "qdrant+http", "qdrant+https")
DEFAULT_COLLECTION = "llmvec"
#: Precisions each kind of store offers (Qdrant's are its own quantizations).
STORE_PRECISIONS = {"faiss": ("float32", "int8", "binary"), "qdrant": ("float32", "int8", "binary")}
#: Every precision some store offers.
ALL_STORE_PRECISIONS = tuple(
    dict.fromkeys(p for offered in STORE_PRECISIONS.values() for p in offered)
)
_USAGE = "faiss:PATH, qdrant:PATH, qdrant-edge:PATH or qdrant+http://HOST:PORT/COLLECTION"


@dataclass(frozen=True)
class Store:
    """A parsed store address."""

    scheme: str
    path: Path | None = None
    url: str | None = None
    collection: str = DEFAULT_COLLECTION
    api_key: str | None = field(default=None, repr=False)
    #: Open an embedded-mode folder llmvec did not sign (see :mod:`llmvec.index.trust`).
    trust_store: bool = False

    def __str__(self) -> str:
        if self.url is not None:
            return f"qdrant+{self.url}/{self.collection}"
        return f"{self.scheme}:{self.path}"

    @property
    def family(self) -> str:
        """``faiss`` or ``qdrant``."""
        return "faiss" if self.scheme == "faiss" else "qdrant"

    @property
    def engine(self) -> str:
        """The :class:`~llmvec.QdrantIndex` engine of a Qdrant store."""
        return "edge" if self.scheme == "qdrant-edge" else "client"

    @property
    def exists(self) -> bool:
        """Whether a local store is already there (a server store is checked on opening)."""
        return self.path is not None and self.path.exists()


def parse_store(address: str, *, api_key: str | None = None, trust_store: bool = False) -> Store:
    """Parse a store address (see the module docstring). ``api_key`` (default: the
    ``QDRANT_API_KEY`` environment variable) goes with a server address."""
    scheme, sep, rest = address.partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise ValueError(f"unknown store {_redacted(address)!r}; use {_USAGE}")
    if scheme.startswith("qdrant+"):
        parts = urlsplit(address[len("qdrant+") :])
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"store {_redacted(address)!r} carries credentials in its URL, which Qdrant "
                "does not read and which would be printed; give the API key with --api-key or "
                "the QDRANT_API_KEY environment variable"
            )
        collection = parts.path.strip("/")
        if not parts.hostname or not collection or "/" in collection:
            raise ValueError(
                f"store {address!r} needs a host and one collection name: "
                "qdrant+http://HOST:PORT/COLLECTION"
            )
        from llmvec.index.qdrant import check_collection_name

        return Store(
            scheme,
            url=f"{parts.scheme}://{parts.netloc}",
            collection=check_collection_name(collection),
            api_key=api_key or os.environ.get("QDRANT_API_KEY") or None,
        )
    return Store(scheme, path=Path(rest).expanduser(), trust_store=trust_store)


def _redacted(address: str) -> str:
    """``address`` with any ``user:password@`` part of a URL replaced by ``***@``."""
    head, at, tail = address.rpartition("@")
    if not at or "://" not in head:
        return address
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


@contextmanager
def store_writer(store: Store) -> Iterator[None]:
    """Hold a local store's writer lock (a server serialises its own writers)."""
    if store.path is None:
        yield
        return
    with writer_lock(store.path):
        yield


def check_store_precision(store: Store, precision: str) -> str:
    """``precision`` if the store offers it, else a ``ValueError`` naming the allowed ones."""
    allowed = STORE_PRECISIONS[store.family]
    if precision not in allowed:
        raise ValueError(
            f"precision {precision!r} is not available for a {store.family} store; allowed: "
            f"{list(allowed)}"
        )
    return precision


def open_store(store: Store, encoder: TextEncoder | None = None) -> BaseIndex:
    """Open an existing index with its stored settings (the encoder is checked, or built from
    the stored spec on the first text query)."""
    if store.family == "faiss":
        from llmvec.index.faiss import FaissIndex

        assert store.path is not None
        return FaissIndex.load(store.path, encoder)
    from llmvec.index.qdrant import QdrantIndex

    return QdrantIndex.load(
        store.path,
        encoder,
        collection=store.collection,
        url=store.url,
        api_key=store.api_key,
        engine=store.engine,
        trust_store=store.trust_store,
    )


def create_store(
    store: Store, encoder: TextEncoder | None, precision: str, **options: Any
) -> BaseIndex:
    """A new index for ``store``, or the existing one after checking that its spec and precision
    match ``encoder`` and ``precision``. ``encoder`` may be ``None`` when ``options`` give the
    vectors' ``spec`` (vectors computed elsewhere, as on Ray)."""
    check_store_precision(store, precision)
    if store.family == "faiss":
        from llmvec.index.faiss import FaissIndex

        if store.exists:
            index = open_store(store, encoder)
            if encoder is None and options.get("spec") is not None:
                check_spec(index.spec, options["spec"], what=f"store {store.path}")
            if index.spec.precision != precision:
                raise ValueError(
                    f"store {store.path} holds precision {index.spec.precision!r}, not "
                    f"{precision!r}; pass --precision {index.spec.precision} or another store"
                )
            return index
        return FaissIndex(encoder, precision=precision, **options)
    from llmvec.index.qdrant import QdrantIndex

    return QdrantIndex(
        encoder,
        store.collection,
        path=store.path,
        url=store.url,
        api_key=store.api_key,
        engine=store.engine,
        quantization=None if precision == "float32" else precision,
        trust_store=store.trust_store,
        **options,
    )


def finish_store(index: BaseIndex, store: Store) -> None:
    """Persist what was added: save a FAISS directory, optimize and close a Qdrant store."""
    if store.family == "faiss":
        assert store.path is not None
        index.save(store.path)
        return
    index.optimize()
    index.close()
