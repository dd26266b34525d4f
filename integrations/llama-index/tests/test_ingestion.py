"""LLMVecEmbedding in LlamaIndex pipelines: ingestion, Qdrant vector store index, retrieval."""

from __future__ import annotations

import numpy as np
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.embeddings.llmvec import LLMVecEmbedding
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from llmvec import Encoder

BINARY = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))


def pipeline(embed_model: LLMVecEmbedding, **kwargs: object) -> IngestionPipeline:
    splitter = SentenceSplitter(chunk_size=48, chunk_overlap=0)
    return IngestionPipeline(transformations=[splitter, embed_model], **kwargs)


def assert_embedded(nodes: list[BaseNode], documents: list[Document], encoder: Encoder) -> None:
    """Every chunk carries the encoder's document vector of the text LlamaIndex embeds."""
    assert len(nodes) > len(documents)  # the long document was split
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    expected = encoder.encode_documents(texts)
    np.testing.assert_allclose([node.embedding for node in nodes], expected, atol=1e-5)


def test_ingestion_pipeline(minilm: Encoder, documents: list[Document]) -> None:
    nodes = pipeline(LLMVecEmbedding(encoder=minilm)).run(documents=documents)
    assert_embedded(nodes, documents, minilm)


async def test_ingestion_pipeline_async(minilm: Encoder, documents: list[Document]) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm, embed_batch_size=3, num_workers=2)
    nodes = await pipeline(embed_model).arun(documents=documents)
    assert_embedded(nodes, documents, minilm)


def test_vector_store_index_over_qdrant(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    store = QdrantVectorStore("corpus", client=QdrantClient(":memory:"))
    index = VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LLMVecEmbedding(encoder=minilm),
    )
    retriever = index.as_retriever(similarity_top_k=3)
    for question, answer in questions.items():
        ranked = [hit.node.metadata["id"] for hit in retriever.retrieve(question)]
        assert ranked[0] == answer, f"{question!r} retrieved {ranked}"


async def test_async_ingestion_into_qdrant_then_retrieve(
    minilm: Encoder, documents: list[Document], questions: dict[str, str]
) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm)
    store = QdrantVectorStore("corpus", aclient=AsyncQdrantClient(":memory:"))
    await pipeline(embed_model, vector_store=store).arun(documents=documents)
    retriever = VectorStoreIndex.from_vector_store(store, embed_model=embed_model).as_retriever(
        similarity_top_k=3
    )
    for question, answer in questions.items():
        ranked = [hit.node.metadata["id"] for hit in await retriever.aretrieve(question)]
        assert ranked[0] == answer, f"{question!r} retrieved {ranked}"


def test_matryoshka_binary_qdrant_index_keeps_the_spec(
    documents: list[Document], questions: dict[str, str]
) -> None:
    embed_model = LLMVecEmbedding(model_name="all-minilm-l6-v2", pooling="mean", truncate_dim=128)
    client = QdrantClient(":memory:")
    # The embedded Qdrant accepts the binary quantization config and searches the float
    # vectors (a Qdrant server applies it); the vector size is the truncated dimension.
    store = QdrantVectorStore("matryoshka", client=client, quantization_config=BINARY)
    pipeline(embed_model, vector_store=store).run(documents=documents)
    vectors = client.get_collection("matryoshka").config.params.vectors
    assert isinstance(vectors, models.VectorParams) and vectors.size == 128
    assert embed_model.spec.dim == embed_model.spec.truncate_dim == 128
    assert len(embed_model.get_query_embedding("tides")) == 128

    same = LLMVecEmbedding(model_name="all-minilm-l6-v2", pooling="mean", truncate_dim=128)
    assert same.spec == embed_model.spec
    retriever = VectorStoreIndex.from_vector_store(store, embed_model=same).as_retriever(
        similarity_top_k=3
    )
    for question, answer in questions.items():
        ranked = [hit.node.metadata["id"] for hit in retriever.retrieve(question)]
        assert ranked[0] == answer, f"{question!r} retrieved {ranked}"
