"""LlamaIndex integration for llmvec: decoder-only LLMs as LlamaIndex embeddings."""

from llama_index.embeddings.llmvec.base import LLMVecEmbedding

__all__ = ["LLMVecEmbedding"]
