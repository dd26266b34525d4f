"""The ASGI application of ``llmvec serve``: ``/v1/embeddings``, ``/v1/models``, ``/health``
and ``/metrics`` on Starlette, around one :class:`~llmvec.Encoder` and its
:class:`~llmvec.serving.batcher.Batcher`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmvec.compress import Calibration
from llmvec.encoder import Encoder
from llmvec.serving.batcher import Batcher
from llmvec.serving.metrics import Metrics
from llmvec.serving.protocol import (
    ApiError,
    Limits,
    check_request,
    compress,
    parse_request,
    response_body,
)

logger = logging.getLogger(__name__)

#: Routes answered without the API key (load balancers' probes).
OPEN_ROUTES = ("/health",)
ROUTES = ("/v1/embeddings", "/v1/models", "/health", "/metrics")


@dataclass(frozen=True)
class ServerConfig:
    """How the server batches, limits and guards requests.

    Args:
        model_name: the ``model`` clients name (default: the encoder's model).
        api_key: the key clients send as ``Authorization: Bearer KEY`` (``None``: no key).
        limits: inputs per request, characters per input, request bytes, truncation.
        max_batch_tokens / max_wait_s: the batcher's token budget and wait.
        calibration: per-dimension ranges for ``int8`` / ``uint8`` output.
    """

    model_name: str | None = None
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_batch_tokens: int = 16384
    max_wait_s: float = 0.0
    calibration: Calibration | None = None


class EmbeddingService:
    """The server's state: the encoder, its batcher, metrics, and whether it drains."""

    def __init__(self, encoder: Encoder, config: ServerConfig) -> None:
        self.encoder = encoder
        self.config = config
        self.model_name = config.model_name or encoder.model_name
        self.spec = encoder.spec
        self.metrics = Metrics()
        self.batcher = Batcher(
            encoder,
            config.max_batch_tokens,
            config.max_wait_s,
            truncate=config.limits.truncate,
            observer=self.metrics,
        )
        self.draining = False
        self.in_flight = 0
        self.created = int(time.time())

    def start_draining(self) -> None:
        """Answer 503 to new requests; those in flight finish."""
        if not self.draining:
            logger.info("draining: %d requests in flight, new ones get 503", self.in_flight)
        self.draining = True

    # ------------------------------------------------------------------ routes
    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await self._read_body(request)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise ApiError(400, f"the request body is not valid JSON: {error}") from None
            parsed = parse_request(data, self.config.limits)
            if parsed.model is not None and parsed.model != self.model_name:
                raise ApiError(
                    404,
                    f"the model {parsed.model!r} does not exist here; this server serves "
                    f"{self.model_name!r}",
                    param="model",
                    code="model_not_found",
                )
            check_request(parsed, self.spec.dim, self.config.calibration)
            encoded = await asyncio.wrap_future(self.batcher.submit(parsed.texts, parsed.side))
            vectors = compress(
                parsed, encoded.vectors, self.spec.normalize, self.config.calibration
            )
        except ApiError as error:
            return self.error(error)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as error:
            logger.exception("an embeddings request failed")
            return self.error(ApiError(500, f"the encoder failed: {error}", kind="server_error"))
        self.metrics.inputs.inc(len(parsed.texts))
        self.metrics.tokens.inc(encoded.tokens)
        self.metrics.latency.observe(time.perf_counter() - started)
        return json_response(response_body(parsed, vectors, self.model_name, encoded.tokens))

    async def models(self, request: Request) -> Response:
        return json_response({"object": "list", "data": [self._model_card()]})

    async def model(self, request: Request) -> Response:
        if request.path_params["model"] != self.model_name:
            message = f"the model {request.path_params['model']!r} does not exist here"
            return self.error(ApiError(404, message, param="model", code="model_not_found"))
        return json_response(self._model_card())

    async def health(self, request: Request) -> Response:
        if self.draining:
            return json_response({"status": "draining"}, status=503)
        return json_response({"status": "ok"})

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    def error(self, error: ApiError) -> Response:
        """An OpenAI-shaped error response, counted by type."""
        self.metrics.errors.labels(error.kind).inc()
        return json_response(error.body(), status=error.status)

    def _model_card(self) -> dict[str, Any]:
        """OpenAI's model object, with the vectors' spec (clients check it against an index)."""
        return {
            "id": self.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "llmvec",
            "llmvec_spec": self.spec.to_dict(),
        }

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, f"the request body is over this server's {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body is over this server's {limit} bytes")
            chunks.append(chunk)
        if not size:
            raise ApiError(400, "the request body is empty: send a JSON object")
        return b"".join(chunks)


def json_response(body: Any, status: int = 200) -> Response:
    """JSON through orjson (numpy rows written directly)."""
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type="application/json")


class Gate:
    """ASGI middleware before every route: 503 while draining, the API key, in-flight counts
    and per-route status counts."""

    def __init__(self, app: ASGIApp, service: EmbeddingService) -> None:
        self.app = app
        self.service = service
        key = service.config.api_key
        self._key = None if key is None else key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        path = scope["path"]
        route = next((r for r in ROUTES if path == r or path.startswith(r + "/")), "other")
        if service.draining:
            error = ApiError(503, "the server is shutting down", kind="server_error")
            await self._answer(scope, receive, send, error, route)
            return
        if self._key is not None and path not in OPEN_ROUTES and not self._authorized(scope):
            error = ApiError(401, "missing or wrong API key", code="invalid_api_key")
            await self._answer(scope, receive, send, error, route)
            return

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                service.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        service.in_flight += 1
        service.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counted_send)
        finally:
            service.in_flight -= 1
            service.metrics.in_flight.dec()

    def _authorized(self, scope: Scope) -> bool:
        assert self._key is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
        return False

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, error: ApiError, route: str
    ) -> None:
        self.service.metrics.requests.labels(route, str(error.status)).inc()
        await self.service.error(error)(scope, receive, send)


def build_app(encoder: Encoder, config: ServerConfig | None = None) -> Starlette:
    """The server's ASGI app; its lifespan starts and stops the batcher. The service is
    ``app.state.service``."""
    service = EmbeddingService(encoder, config or ServerConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.batcher.start()
        try:
            yield
        finally:
            service.batcher.stop()

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return service.error(ApiError(error.status_code, str(error.detail), kind=kind))

    app = Starlette(
        routes=[
            Route("/v1/embeddings", service.embeddings, methods=["POST"]),
            Route("/v1/models", service.models, methods=["GET"]),
            Route("/v1/models/{model:path}", service.model, methods=["GET"]),
            Route("/health", service.health, methods=["GET"]),
            Route("/metrics", service.metrics_page, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(Gate, service=service)
    return app
