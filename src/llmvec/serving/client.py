"""``RemoteEncoder``: the vectors of an ``llmvec serve`` server, where a local
:class:`~llmvec.Encoder` would be used (indexes, the CLI, the LangChain and LlamaIndex packages,
Ray's writers). Its :attr:`spec` is the server's, so an index checks it as it checks a local
encoder's."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from llmvec.serving import API_KEY_ENV
from llmvec.serving.protocol import Side
from llmvec.spec import EmbeddingSpec
from llmvec.validation import as_text_list, check_positive


class RemoteEncoder:
    """Query and document vectors from an ``llmvec serve`` server.

    Args:
        base_url: the server (``http://127.0.0.1:8080``; a trailing ``/v1`` is accepted).
        api_key: its key (default: the ``LLMVEC_API_KEY`` environment variable).
        batch_size: texts per request.
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout: float = 600.0,
    ) -> None:
        check_positive("batch_size", batch_size)
        root = base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        if not root.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = root
        self.batch_size = batch_size
        key = os.environ.get(API_KEY_ENV) if api_key is None else api_key
        headers = {} if not key else {"Authorization": f"Bearer {key}"}
        self._client = httpx.Client(base_url=root, headers=headers, timeout=timeout)
        card = self._model_card()
        self.model = str(card["id"])
        self._spec = EmbeddingSpec.from_dict(card["llmvec_spec"])

    def _model_card(self) -> dict[str, Any]:
        try:
            response = self._client.get("/v1/models")
        except httpx.HTTPError as error:
            raise ConnectionError(f"cannot reach the server at {self.base_url}: {error}") from None
        body = _checked(response, self.base_url)
        models = body.get("data") or []
        if not models or "llmvec_spec" not in models[0]:
            raise ValueError(
                f"the server at {self.base_url} is not an llmvec server (its /v1/models gives no "
                "llmvec_spec), so its vectors cannot be checked against an index"
            )
        card: dict[str, Any] = models[0]
        return card

    @property
    def spec(self) -> EmbeddingSpec:
        """The :class:`EmbeddingSpec` of the server's vectors."""
        return self._spec

    @property
    def dim(self) -> int:
        return self._spec.dim

    @property
    def model_name(self) -> str:
        return self._spec.model

    @property
    def query_instruction(self) -> str | None:
        return self._spec.query_instruction

    @property
    def document_instruction(self) -> str | None:
        return self._spec.document_instruction

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.base_url!r}, model={self.model!r}, dim={self.dim})"

    def encode_queries(
        self, texts: str | Sequence[str], *, batch_size: int | None = None
    ) -> np.ndarray:
        """Query vectors (the server's query instruction), float32 ``(n, dim)``."""
        return self.encode(texts, "query", batch_size)

    def encode_documents(
        self, texts: str | Sequence[str], *, batch_size: int | None = None
    ) -> np.ndarray:
        """Document vectors, float32 ``(n, dim)``."""
        return self.encode(texts, "document", batch_size)

    def encode(
        self, texts: str | Sequence[str], side: Side, batch_size: int | None = None
    ) -> np.ndarray:
        """Vectors of one side, ``batch_size`` texts per request."""
        items = as_text_list(texts)
        step = self.batch_size if batch_size is None else batch_size
        check_positive("batch_size", step)
        parts = [
            self._request(items[start : start + step], side) for start in range(0, len(items), step)
        ]
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)

    def _request(self, texts: list[str], side: Side) -> np.ndarray:
        payload = {
            "input": texts,
            "model": self.model,
            "encoding_format": "base64",
            "input_type": side,
        }
        try:
            response = self._client.post("/v1/embeddings", json=payload)
        except httpx.HTTPError as error:
            raise ConnectionError(f"cannot reach the server at {self.base_url}: {error}") from None
        body = _checked(response, self.base_url)
        rows = sorted(body["data"], key=lambda item: item["index"])
        decoded = [np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4") for row in rows]
        return np.stack(decoded).astype(np.float32, copy=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _checked(response: httpx.Response, url: str) -> dict[str, Any]:
    """The JSON body of a 2xx response; otherwise the server's error message, raised."""
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.is_success:
        return body
    error = body.get("error") or {}
    message = error.get("message") or response.text[:200]
    if response.status_code == 401:
        raise PermissionError(f"the server at {url} refused the API key: {message}")
    raise ValueError(f"the server at {url} answered {response.status_code}: {message}")
