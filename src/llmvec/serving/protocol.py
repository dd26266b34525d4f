"""OpenAI's ``/v1/embeddings`` schema with Cohere- and vLLM-style extensions: checking a
request, building its response body, and errors in OpenAI's shape.

Extensions: ``input_type`` (``query`` or ``document``, Cohere's ``search_query`` /
``search_document`` too) chooses the encoder's instruction side; ``embedding_types`` (a list among
``float``, ``int8``, ``uint8``, ``binary``, ``ubinary``) returns each item's vectors under
``embeddings`` by type instead of one ``embedding``. Keys the schema does not name are ignored,
as OpenAI's server does, so that every client's extras pass.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmvec.compress import Calibration, quantize, truncate

EncodingFormat = Literal["float", "base64"]
Side = Literal["query", "document"]
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
ENCODING_FORMATS = ("float", "base64")
INPUT_TYPES: dict[str, Side] = {
    "query": "query",
    "search_query": "query",
    "document": "document",
    "search_document": "document",
}


class ApiError(Exception):
    """A request the server refuses: an HTTP status and OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers."""
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_inputs: int = 2048
    max_input_chars: int = 200_000
    max_request_bytes: int = 16 * 1024 * 1024
    #: ``False``: an input over the encoder's ``max_length`` is a 400 instead of being cut.
    truncate: bool = True


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked ``/v1/embeddings`` request."""

    texts: list[str]
    model: str | None
    dimensions: int | None
    encoding_format: EncodingFormat
    side: Side
    embedding_types: tuple[str, ...] | None


def parse_request(data: Any, limits: Limits) -> EmbeddingRequest:
    """Check a decoded JSON body against the schema and ``limits``; raise :class:`ApiError`
    (400) naming the first problem."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if "input" not in data:
        raise ApiError(400, "'input' is required: a string or a list of strings", param="input")
    texts = _texts(data["input"], limits)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    dimensions = data.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise ApiError(400, "'dimensions' must be a positive integer", param="dimensions")
    encoding_format = data.get("encoding_format") or "float"
    if encoding_format not in ENCODING_FORMATS:
        raise ApiError(
            400,
            f"'encoding_format' must be one of {list(ENCODING_FORMATS)}, got {encoding_format!r}",
            param="encoding_format",
        )
    input_type = data.get("input_type") or "document"
    if not isinstance(input_type, str) or input_type not in INPUT_TYPES:
        raise ApiError(
            400,
            f"'input_type' must be one of {list(INPUT_TYPES)}, got {input_type!r}",
            param="input_type",
        )
    return EmbeddingRequest(
        texts=texts,
        model=model,
        dimensions=dimensions,
        encoding_format="base64" if encoding_format == "base64" else "float",
        side=INPUT_TYPES[input_type],
        embedding_types=_embedding_types(data.get("embedding_types")),
    )


def _texts(value: Any, limits: Limits) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ApiError(400, "'input' must be a string or a list of strings", param="input")
    if not value:
        raise ApiError(400, "'input' must not be empty", param="input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value) or any(
        isinstance(item, list) for item in value
    ):
        raise ApiError(
            400, "token-id input is not supported: send the texts as strings", param="input"
        )
    if len(value) > limits.max_inputs:
        raise ApiError(
            400,
            f"'input' holds {len(value)} texts; this server takes at most {limits.max_inputs} "
            "per request",
            param="input",
        )
    for position, text in enumerate(value):
        if not isinstance(text, str):
            raise ApiError(
                400,
                f"input[{position}] must be a string, got {type(text).__name__}",
                param="input",
            )
        if not text:
            raise ApiError(400, f"input[{position}] is an empty string", param="input")
        if len(text) > limits.max_input_chars:
            raise ApiError(
                400,
                f"input[{position}] has {len(text)} characters; this server takes at most "
                f"{limits.max_input_chars}",
                param="input",
            )
    return value


def _embedding_types(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or any(not isinstance(kind, str) or kind not in EMBEDDING_TYPES for kind in value)
    ):
        raise ApiError(
            400,
            f"'embedding_types' must be a non-empty list among {list(EMBEDDING_TYPES)}, "
            f"got {value!r}",
            param="embedding_types",
        )
    return tuple(dict.fromkeys(value))


def check_request(request: EmbeddingRequest, dim: int, calibration: Calibration | None) -> None:
    """A 400 for what this server cannot give: ``dimensions`` above the model's, or ``int8`` /
    ``uint8`` without per-dimension ranges for the dimensions asked."""
    if request.dimensions is not None and request.dimensions > dim:
        raise ApiError(
            400,
            f"'dimensions' is {request.dimensions}, above this model's {dim}",
            param="dimensions",
        )
    wanted = request.dimensions or dim
    for kind in request.embedding_types or ():
        if kind in ("int8", "uint8") and (calibration is None or len(calibration[0]) != wanted):
            has = "none" if calibration is None else f"ranges of {len(calibration[0])} dimensions"
            raise ApiError(
                400,
                f"'{kind}' needs per-dimension ranges for {wanted} dimensions; this server has "
                f"{has} (start it with --calibration)",
                param="embedding_types",
            )


def compress(
    request: EmbeddingRequest,
    vectors: np.ndarray,
    renormalize: bool,
    calibration: Calibration | None,
) -> dict[str, np.ndarray]:
    """The request's vectors by type (checked by :func:`check_request`): Matryoshka truncation
    to ``dimensions`` (normalised again when the encoder normalises), then each type's
    compression."""
    if request.dimensions is not None and request.dimensions < vectors.shape[1]:
        vectors = truncate(vectors, request.dimensions, renormalize=renormalize)
    return {
        kind: vectors if kind == "float" else quantize(vectors, kind, calibration)
        for kind in request.embedding_types or ("float",)
    }


def response_body(
    request: EmbeddingRequest, vectors: dict[str, np.ndarray], model: str, tokens: int
) -> dict[str, Any]:
    """OpenAI's list of embeddings (rows as arrays, for a numpy-aware JSON encoder) and usage."""

    def encoded(row: np.ndarray) -> Any:
        if request.encoding_format == "base64":
            return base64.b64encode(np.ascontiguousarray(row).tobytes()).decode("ascii")
        return row

    data: list[dict[str, Any]] = []
    for position in range(len(request.texts)):
        item: dict[str, Any] = {"object": "embedding", "index": position}
        if request.embedding_types is None:
            item["embedding"] = encoded(vectors["float"][position])
        else:
            item["embeddings"] = {kind: encoded(rows[position]) for kind, rows in vectors.items()}
        data.append(item)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}
