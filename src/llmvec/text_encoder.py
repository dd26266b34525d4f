"""What an index, the integrations and Ray's writers use of an encoder: a local
:class:`~llmvec.Encoder`, or :class:`~llmvec.serving.RemoteEncoder` calling ``llmvec serve``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from llmvec.serving import RemoteEncoder


@runtime_checkable
class TextEncoder(Protocol):
    """Query and document vectors, and the :class:`EmbeddingSpec` that says how they are made."""

    @property
    def spec(self) -> EmbeddingSpec: ...

    @property
    def dim(self) -> int: ...

    def encode_queries(
        self, texts: str | Sequence[str], *, batch_size: int | None = None
    ) -> Any: ...

    def encode_documents(
        self, texts: str | Sequence[str], *, batch_size: int | None = None
    ) -> Any: ...


def server_encoder(
    base_url: str | None, api_key: str | None, conflicting: Sequence[str]
) -> RemoteEncoder | None:
    """For a wrapper built from a server or from a local encoder's arguments (LangChain's,
    LlamaIndex's): the :class:`~llmvec.serving.RemoteEncoder` of ``base_url``, or ``None``
    without one. A ``ValueError`` names ``conflicting`` arguments given beside ``base_url``, or an
    ``api_key`` without it."""
    if base_url is None:
        if api_key is not None:
            raise ValueError("api_key is the key of a server: pass base_url=... with it")
        return None
    if conflicting:
        raise ValueError(
            "pass either base_url or an encoder / encoder arguments, not both: the server's "
            f"encoder decides (got base_url={base_url!r} and {sorted(conflicting)})"
        )
    from llmvec.serving import RemoteEncoder

    return RemoteEncoder(base_url, api_key=api_key)
