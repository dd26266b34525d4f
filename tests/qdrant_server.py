"""A stand-in Qdrant server for the ``url=`` tests: a loopback HTTP server that answers the REST
calls QdrantIndex makes by running them on qdrant-client's embedded engine.

Only the server is replaced: the code under test is the real qdrant-client REST client, with its
request serialisation and response parsing.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qdrant_client import QdrantClient, models

Route = Callable[[QdrantClient, str, Any], Any]


def _points(local: QdrantClient, name: str, body: Any) -> Any:
    local.upsert(name, points=models.PointsList.model_validate(body).points)
    return {"operation_id": 0, "status": "completed"}


def _delete(local: QdrantClient, name: str, body: Any) -> Any:
    local.delete(name, points_selector=models.PointIdsList(points=body["points"]))
    return {"operation_id": 0, "status": "completed"}


def _create(local: QdrantClient, name: str, body: Any) -> Any:
    request = models.CreateCollection.model_validate(body)
    return local.create_collection(
        name,
        vectors_config=request.vectors,
        sparse_vectors_config=request.sparse_vectors,
        quantization_config=request.quantization_config,
        metadata=request.metadata,
    )


def _query_batch(local: QdrantClient, name: str, body: Any) -> Any:
    searches = models.QueryRequestBatch.model_validate(body).searches
    return [r.model_dump(mode="json") for r in local.query_batch_points(name, requests=searches)]


def _scroll(local: QdrantClient, name: str, body: Any) -> Any:
    request = models.ScrollRequest.model_validate(body)
    records, offset = local.scroll(
        name,
        limit=request.limit or 10,
        offset=request.offset,
        with_payload=request.with_payload,
        with_vectors=request.with_vector,
    )
    points = [r.model_dump(mode="json") for r in records]
    return {"points": points, "next_page_offset": offset}


def _retrieve(local: QdrantClient, name: str, body: Any) -> Any:
    request = models.PointRequest.model_validate(body)
    records = local.retrieve(
        name,
        ids=request.ids,
        with_payload=request.with_payload,
        with_vectors=request.with_vector,
    )
    return [r.model_dump(mode="json") for r in records]


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/exists"): lambda local, name, body: {"exists": local.collection_exists(name)},
    ("PUT", ""): _create,
    ("GET", "/info"): lambda local, name, body: local.get_collection(name).model_dump(mode="json"),
    ("PUT", "/points"): _points,
    ("POST", "/points/delete"): _delete,
    ("POST", "/points/count"): lambda local, name, body: {"count": local.count(name).count},
    ("POST", "/points/query/batch"): _query_batch,
    ("POST", "/points/scroll"): _scroll,
    ("POST", "/points"): _retrieve,
}
_COLLECTION = re.compile(r"^/collections/([^/?]+)(/[^?]*)?")


class FakeQdrant(ThreadingHTTPServer):
    """Serves the routes above on 127.0.0.1; ``requests`` records (method, path, body) and
    ``api_keys`` each request's ``api-key`` header. With ``api_key``, other keys get a 401."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.local = QdrantClient(":memory:")
        self.requests: list[tuple[str, str, Any]] = []
        self.api_keys: list[str | None] = []
        self.required_key = api_key
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeQdrant

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((method, self.path, body))
        self.server.api_keys.append(self.headers.get("api-key"))
        if self.server.required_key is not None and (
            self.headers.get("api-key") != self.server.required_key
        ):
            return self._send(401, {"status": {"error": "Invalid api-key"}})
        if self.path.split("?")[0] == "/":
            return self._send(200, {"title": "qdrant (stand-in)", "version": "1.20.0"})
        match = _COLLECTION.match(self.path)
        suffix = (match.group(2) or "") if match else ""
        if method == "GET" and suffix == "":
            suffix = "/info"
        route = ROUTES.get((method, suffix)) if match else None
        if route is None:
            return self._send(404, {"status": {"error": f"no route {method} {self.path}"}})
        with self.server.lock:
            try:
                result = route(self.server.local, match.group(1), body)  # type: ignore[union-attr]
            except (ValueError, KeyError) as error:
                return self._send(400, {"status": {"error": str(error)}})
        self._send(200, {"result": result, "status": "ok", "time": 0.0})

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_POST(self) -> None:
        self._answer("POST")


@contextmanager
def fake_qdrant(api_key: str | None = None) -> Iterator[FakeQdrant]:
    """Run a :class:`FakeQdrant` in a thread for the duration of the block."""
    server = FakeQdrant(api_key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
