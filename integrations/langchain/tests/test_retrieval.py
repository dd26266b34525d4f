"""Real retrieval through LangChain vector stores: documents in, a question out."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore
from langchain_llmvec import LLMVecEmbeddings
from langchain_qdrant import QdrantVectorStore
from langchain_qdrant.qdrant import QdrantVectorStoreError
from qdrant_client import models

from llmvec import Encoder

BINARY = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))


def assert_answers_ranked_first(store: VectorStore, questions: dict[str, str]) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 3})
    for question, answer in questions.items():
        ranked = [doc.metadata["id"] for doc in retriever.invoke(question)]
        assert ranked[0] == answer, f"{question!r} retrieved {ranked}"


def test_qdrant_ranks_the_relevant_document_first(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    store = QdrantVectorStore.from_documents(
        documents, LLMVecEmbeddings(minilm), location=":memory:", collection_name="corpus"
    )
    assert_answers_ranked_first(store, questions)


def test_in_memory_ranks_the_relevant_document_first(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    store = InMemoryVectorStore.from_documents(documents, LLMVecEmbeddings(minilm))
    assert_answers_ranked_first(store, questions)


async def test_async_retrieval_in_memory(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    store = await InMemoryVectorStore.afrom_documents(documents, LLMVecEmbeddings(minilm))
    for question, answer in questions.items():
        ranked = await store.as_retriever(search_kwargs={"k": 3}).ainvoke(question)
        assert ranked[0].metadata["id"] == answer


def test_matryoshka_binary_qdrant_index_keeps_the_spec(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    embeddings = LLMVecEmbeddings(model="all-minilm-l6-v2", pooling="mean", truncate_dim=128)
    store = QdrantVectorStore.from_documents(
        documents,
        embeddings,
        location=":memory:",
        collection_name="matryoshka",
        collection_create_options={"quantization_config": BINARY},
    )
    # The embedded Qdrant accepts the binary quantization config and searches the float
    # vectors (a Qdrant server applies it); the vector size is the truncated dimension.
    vectors = store.client.get_collection("matryoshka").config.params.vectors
    assert isinstance(vectors, dict)
    assert vectors[store.vector_name].size == 128
    assert embeddings.spec.dim == embeddings.spec.truncate_dim == 128
    assert len(embeddings.embed_query("tides")) == 128
    assert_answers_ranked_first(store, questions)

    # Reopening the collection with an encoder of the same spec works; the full-size
    # encoder's vectors do not fit it, and the store says so.
    same = LLMVecEmbeddings(model="all-minilm-l6-v2", pooling="mean", truncate_dim=128)
    assert same.spec == embeddings.spec
    assert_answers_ranked_first(QdrantVectorStore(store.client, "matryoshka", same), questions)
    with pytest.raises(QdrantVectorStoreError, match="dimensions"):
        QdrantVectorStore(store.client, "matryoshka", LLMVecEmbeddings(minilm))
