"""Running the app on uvicorn, with a drain on SIGTERM / SIGINT: new requests get 503 while
those in flight finish, then the server stops (a second signal stops it at once)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from llmvec.serving.app import EmbeddingService

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose exit signal drains the app's :class:`EmbeddingService` first."""

    def __init__(self, config: uvicorn.Config, drain_timeout_s: float = 30.0) -> None:
        super().__init__(config)
        app = config.app
        assert isinstance(app, Starlette), "DrainingServer runs build_app's application"
        self.service: EmbeddingService = app.state.service
        self.drain_timeout_s = drain_timeout_s
        self._drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain. Second: stop now. (The signal is not raised again on exit, so
        a drained server exits with status 0.)"""
        if self._drain_deadline is not None:
            self.should_exit = True
            self.force_exit = True
            return
        self._drain_deadline = time.monotonic() + self.drain_timeout_s
        self.service.start_draining()

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self._drain_deadline is None:
            return False
        drained = self.service.in_flight == 0
        if not drained and time.monotonic() > self._drain_deadline:
            logger.warning(
                "drain timeout: stopping with %d requests in flight", self.service.in_flight
            )
        self.should_exit = drained or time.monotonic() > self._drain_deadline
        return self.should_exit


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.1``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 8080,
    drain_timeout_s: float = 30.0,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` (from :func:`~llmvec.serving.app.build_app`) until a signal drains it."""
    service: EmbeddingService = app.state.service
    if not is_loopback(host) and service.config.api_key is None:
        logger.warning("serving on %s without an API key: anyone who reaches it can use it", host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=max(1, round(drain_timeout_s)),
    )
    server = DrainingServer(config, drain_timeout_s)
    server.run(sockets=None if sock is None else [sock])


@contextmanager
def running(app: Starlette, drain_timeout_s: float = 30.0) -> Iterator[tuple[str, DrainingServer]]:
    """Serve ``app`` on a free loopback port in a background thread (a notebook, a test);
    yields the base URL and the server, and stops it on exit."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # a response written in two parts waits 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    server = DrainingServer(config, drain_timeout_s)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting (see its log)")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
