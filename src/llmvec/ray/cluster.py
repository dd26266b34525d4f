"""Joining a Ray cluster, with a clear error when its address does not answer."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

#: Ray's default GCS port, used when an address names only a host.
DEFAULT_PORT = 6379
#: Seconds to wait for a cluster's port to accept a connection.
CONNECT_TIMEOUT = 5.0
#: Addresses that ``ray.init`` resolves itself (the current cluster, a new local one).
_RESOLVED_BY_RAY = ("auto", "local")
#: Ray's switch for token authentication (``token`` or ``disabled``).
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"


def connect(address: str | None = None, **init_options: Any) -> None:
    """Connect this process to Ray: the cluster at ``address`` (``HOST:PORT``,
    ``ray://HOST:PORT``, ``auto``), a new cluster on this machine (``local``), or Ray's default
    for ``None`` (``RAY_ADDRESS``, else a cluster started here, else a new local one).

    Nothing happens if Ray is already initialised here. ``init_options`` go to ``ray.init``.

    Raises:
        ConnectionError: nothing answers at ``address``; raised after at most
            :data:`CONNECT_TIMEOUT` seconds instead of Ray's own long retries.
    """
    import ray

    if ray.is_initialized():
        logger.info("Ray is already initialised in this process; using that connection")
        return
    if address is not None and address not in _RESOLVED_BY_RAY:
        check_reachable(address)
    try:
        ray.init(address=address, **init_options)
    except ConnectionError as error:
        if address is None or os.environ.get(AUTH_MODE_VARIABLE) is not None:
            raise
        # A cluster started with `ray start` requires its token; Ray's message does not say so.
        raise ConnectionError(
            f"{error}. If the cluster uses token authentication (the default of `ray start`), "
            f"set {AUTH_MODE_VARIABLE}=token here and give its token (~/.ray/auth_token)"
        ) from error


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise ``ConnectionError`` unless a TCP connection to ``address`` opens within
    ``timeout`` seconds."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as error:
        raise ValueError(f"invalid Ray address {address!r}: {error}") from None
    if not host:
        raise ValueError(f"invalid Ray address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(
            f"no Ray cluster answers at {address!r} ({host}:{port}: {error}); start one with "
            "`ray start --head` or give the address it prints"
        ) from None
