"""LangChain integration for llmvec: decoder-only LLMs as LangChain embeddings."""

from langchain_llmvec.embeddings import LLMVecEmbeddings

__all__ = ["LLMVecEmbeddings"]
