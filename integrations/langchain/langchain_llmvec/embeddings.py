"""``LLMVecEmbeddings``: LangChain's ``Embeddings`` interface over an :class:`llmvec.Encoder`
or an ``llmvec serve`` server (:class:`llmvec.serving.RemoteEncoder`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from llmvec import EmbeddingSpec, Encoder
from llmvec.text_encoder import TextEncoder, server_encoder
from llmvec.validation import check_text, check_text_list

if TYPE_CHECKING:
    from llmvec.serving import RemoteEncoder

logger = logging.getLogger(__name__)


class LLMVecEmbeddings(Embeddings):
    """LangChain embeddings from any decoder-only LLM, through an :class:`llmvec.Encoder`.

    Build it from an existing encoder, or from the encoder's own keyword arguments::

        from langchain_llmvec import LLMVecEmbeddings

        embeddings = LLMVecEmbeddings(
            model="smollm2",
            template="prompteol",
            query_instruction="Given a question, retrieve passages that answer it",
            truncate_dim=256,
        )
        vectors = embeddings.embed_documents(["Paris is the capital of France."])
        query = embeddings.embed_query("What is the capital of France?")

    ``embed_documents`` always encodes with the document side of the encoder and
    ``embed_query`` with the query side (its instruction), so the two cannot be swapped.
    Vectors are plain lists of Python floats. The async methods (``aembed_documents``,
    ``aembed_query``) are LangChain's defaults, which run these methods in an executor
    thread, off the event loop. The encoder is safe to share (between threads, and between
    wrappers around it): concurrent calls give the same vectors as sequential ones.

    Or from an ``llmvec serve`` server (``pip install "langchain-llmvec[server]"``), whose
    instructions and :attr:`spec` are the server's::

        embeddings = LLMVecEmbeddings(base_url="http://127.0.0.1:8080", api_key="...")

    Args:
        encoder: an :class:`llmvec.Encoder` (or :class:`llmvec.serving.RemoteEncoder`) to use
            as it is.
        base_url: otherwise, the URL of an ``llmvec serve`` server.
        api_key: the server's key (default: the ``LLMVEC_API_KEY`` environment variable).
        **encoder_kwargs: otherwise, the arguments of :class:`llmvec.Encoder` (``model``,
            ``pooling``, ``template``, ``layer``, ``query_instruction``,
            ``document_instruction``, ``instruction_format``, ``truncate_dim``,
            ``batch_size``, ``device``, ``dtype``...).
    """

    def __init__(
        self,
        encoder: Encoder | RemoteEncoder | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        given = [*(["encoder"] if encoder is not None else []), *encoder_kwargs]
        remote = server_encoder(base_url, api_key, given)
        if remote is not None:
            encoder = remote
        elif encoder is None:
            encoder = Encoder(**encoder_kwargs)
        elif not isinstance(encoder, TextEncoder):
            raise TypeError(
                f"encoder must be an llmvec.Encoder or llmvec.serving.RemoteEncoder, got "
                f"{type(encoder).__name__} ({encoder!r}); to load a model by name pass it as "
                "model=..., to use a server pass base_url=..."
            )
        elif encoder_kwargs:
            raise ValueError(
                f"pass either an encoder or encoder arguments, not both (got encoder={encoder!r} "
                f"and {sorted(encoder_kwargs)})"
            )
        self.encoder: TextEncoder = encoder

    @property
    def spec(self) -> EmbeddingSpec:
        """The :class:`llmvec.EmbeddingSpec` of the vectors (store it with the index)."""
        return self.encoder.spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the encoder's document side; ``[]`` gives ``[]``."""
        items = check_text_list(texts)
        logger.debug("embedding %d documents", len(items))
        vectors = self.encoder.encode_documents(items)
        rows: list[list[float]] = vectors.tolist()
        return rows

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the encoder's query side (its query instruction)."""
        vectors = self.encoder.encode_queries([check_text("text", text)])
        row: list[float] = vectors[0].tolist()
        return row
