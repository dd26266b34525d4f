"""``LLMVecEmbedding``: LlamaIndex's ``BaseEmbedding`` over an :class:`llmvec.Encoder` or an
``llmvec serve`` server (:class:`llmvec.serving.RemoteEncoder`)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.constants import DEFAULT_EMBED_BATCH_SIZE

from llmvec import EmbeddingSpec, Encoder
from llmvec.text_encoder import TextEncoder, server_encoder
from llmvec.validation import check_text, check_text_list

if TYPE_CHECKING:
    from llmvec.serving import RemoteEncoder

logger = logging.getLogger(__name__)


class LLMVecEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from any decoder-only LLM, through an :class:`llmvec.Encoder`.

    Build it from an existing encoder, or from a model name and the encoder's keyword
    arguments::

        from llama_index.embeddings.llmvec import LLMVecEmbedding

        embed_model = LLMVecEmbedding(
            model_name="smollm2",
            template="prompteol",
            query_instruction="Given a question, retrieve passages that answer it",
            embed_batch_size=16,
        )

    Queries are encoded with the encoder's query side (``query_instruction``), texts with its
    document side (``text_instruction``, llmvec's ``document_instruction``); the encoder puts
    the instruction in the family's format and keeps it out of mean pooling. Each call of
    the batched method encodes at most ``embed_batch_size`` texts per forward pass. The async
    methods run the encoder in a worker thread, off the event loop. The encoder is safe to
    share (between threads, ``num_workers`` and other wrappers around it): concurrent calls
    give the same vectors as sequential ones.

    Or from an ``llmvec serve`` server (``pip install "llama-index-embeddings-llmvec[server]"``),
    whose instructions and :attr:`spec` are the server's (``embed_batch_size`` is then the
    number of texts per request)::

        embed_model = LLMVecEmbedding(base_url="http://127.0.0.1:8080", api_key="...")

    Args:
        model_name: a packaged-model name (``smollm2``, ``all-minilm-l6-v2``), a hub id, a local
            directory or a ``.gguf`` file; not with ``encoder`` or ``base_url``.
        encoder: an :class:`llmvec.Encoder` (or :class:`llmvec.serving.RemoteEncoder`) to use
            as it is (its instructions included).
        base_url: the URL of an ``llmvec serve`` server to use instead of a local model.
        api_key: the server's key (default: the ``LLMVEC_API_KEY`` environment variable).
        query_instruction: task instruction for queries.
        text_instruction: task instruction for documents (usually none).
        embed_batch_size: texts per batch (default: LlamaIndex's, or the encoder's batch size).
        **kwargs: :class:`BaseEmbedding` fields (``callback_manager``, ``num_workers``,
            ``embeddings_cache``...) and otherwise the arguments of :class:`llmvec.Encoder`
            (``pooling``, ``template``, ``layer``, ``instruction_format``, ``truncate_dim``,
            ``max_length``, ``device``, ``dtype``...).
    """

    query_instruction: str | None = Field(
        default=None, frozen=True, description="Task instruction for queries."
    )
    text_instruction: str | None = Field(
        default=None, frozen=True, description="Task instruction for documents."
    )

    _encoder: Encoder | RemoteEncoder = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: Encoder | RemoteEncoder | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        query_instruction: str | None = None,
        text_instruction: str | None = None,
        embed_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        base_fields = {
            name: kwargs.pop(name) for name in list(kwargs) if name in BaseEmbedding.model_fields
        }
        given = {
            "model_name": model_name,
            "query_instruction": query_instruction,
            "text_instruction": text_instruction,
            **kwargs,
        }
        conflicting = sorted(name for name, value in given.items() if value is not None)
        remote = server_encoder(
            base_url, api_key, [*(["encoder"] if encoder is not None else []), *conflicting]
        )
        if remote is not None:
            encoder = remote
        elif encoder is None:
            chosen: dict[str, Any] = {
                "model": model_name,
                "query_instruction": query_instruction,
                "document_instruction": text_instruction,
            }
            encoder = Encoder(
                **{name: value for name, value in chosen.items() if value is not None},
                batch_size=DEFAULT_EMBED_BATCH_SIZE
                if embed_batch_size is None
                else embed_batch_size,
                **kwargs,
            )
        elif not isinstance(encoder, TextEncoder):
            raise TypeError(
                f"encoder must be an llmvec.Encoder or llmvec.serving.RemoteEncoder, got "
                f"{type(encoder).__name__} ({encoder!r}); to load a model by name pass it as "
                "model_name=..., to use a server pass base_url=..."
            )
        elif conflicting:
            raise ValueError(
                f"pass either an encoder or encoder arguments, not both (got encoder="
                f"{encoder!r} and {conflicting})"
            )
        # This class's own fields go in a dict: type checkers only know BaseEmbedding's.
        own_fields: dict[str, Any] = {
            "query_instruction": encoder.query_instruction,
            "text_instruction": encoder.document_instruction,
        }
        super().__init__(
            model_name=encoder.model_name,
            embed_batch_size=encoder.batch_size if embed_batch_size is None else embed_batch_size,
            **own_fields,
            **base_fields,
        )
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "LLMVecEmbedding"

    @property
    def encoder(self) -> Encoder | RemoteEncoder:
        """The :class:`llmvec.Encoder` (or the server's :class:`llmvec.serving.RemoteEncoder`)
        that produces the vectors."""
        return self._encoder

    @property
    def spec(self) -> EmbeddingSpec:
        """The :class:`llmvec.EmbeddingSpec` of the vectors (store it with the index)."""
        return self._encoder.spec

    # ------------------------------------------------------------------ public batch methods
    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed texts in batches of ``embed_batch_size``; ``[]`` gives ``[]``."""
        check_text_list(texts)
        return super().get_text_embedding_batch(texts, show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        check_text_list(texts)
        return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)

    # ------------------------------------------------------------------ BaseEmbedding hooks
    def _get_query_embedding(self, query: str) -> Embedding:
        vectors = self._encoder.encode_queries([check_text("query", query)])
        row: Embedding = vectors[0].tolist()
        return row

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([check_text("text", text)])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        logger.debug("embedding %d texts", len(texts))
        vectors = self._encoder.encode_documents(texts, batch_size=self.embed_batch_size)
        rows: list[Embedding] = vectors.tolist()
        return rows

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
