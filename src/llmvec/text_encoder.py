"""What an index, the integrations and Ray's writers use of an encoder: a local
:class:`~llmvec.Encoder`, or :class:`~llmvec.serving.RemoteEncoder` calling ``llmvec serve``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from llmvec.spec import EmbeddingSpec


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
