"""LLMVecEmbeddings behaviour: query/document sides, output types, bad input, concurrency."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_llmvec import LLMVecEmbeddings

from llmvec import Encoder
from llmvec.testing import record_forward_passes

INSTRUCTION = "Given a question, retrieve passages that answer it"
TEXTS = ["The cat sat on the mat.", "Stock markets fell on Monday.", "Paris is in France."]


@pytest.fixture(scope="module")
def stopped_early() -> Encoder:
    """MiniLM pooled at layer 3: each pass stops there by a hook on the model all callers share."""
    return Encoder("all-minilm-l6-v2", pooling="mean", layer=3, batch_size=2)


@pytest.fixture(scope="module")
def instructed() -> LLMVecEmbeddings:
    """MiniLM with a query instruction, built from keyword arguments."""
    return LLMVecEmbeddings(model="all-minilm-l6-v2", pooling="mean", query_instruction=INSTRUCTION)


def test_kwargs_reach_the_encoder(instructed: LLMVecEmbeddings) -> None:
    spec = instructed.spec
    assert (spec.model, spec.pooling, spec.query_instruction) == (
        "all-minilm-l6-v2",
        "mean",
        INSTRUCTION,
    )


def test_documents_use_the_document_side(instructed: LLMVecEmbeddings) -> None:
    expected = instructed.encoder.encode_documents(TEXTS)
    np.testing.assert_allclose(instructed.embed_documents(TEXTS), expected, atol=1e-6)


def test_query_uses_the_query_instruction(instructed: LLMVecEmbeddings) -> None:
    query = instructed.embed_query(TEXTS[0])
    np.testing.assert_allclose(query, instructed.encoder.encode_queries(TEXTS[:1])[0], atol=1e-6)
    # The same text as a document has no instruction, so the two sides differ.
    document = instructed.embed_documents(TEXTS[:1])[0]
    assert float(np.dot(query, document)) < 0.999


def test_vectors_are_lists_of_python_floats(minilm: Encoder) -> None:
    embeddings = LLMVecEmbeddings(minilm)
    documents = embeddings.embed_documents(TEXTS)
    query = embeddings.embed_query("cat")
    assert type(documents) is list and all(type(row) is list for row in documents)
    assert all(type(x) is float for row in [*documents, query] for x in row)
    assert [len(row) for row in documents] == [minilm.dim] * len(TEXTS)
    assert len(query) == minilm.dim


def test_empty_list_gives_empty_list(minilm: Encoder) -> None:
    assert LLMVecEmbeddings(minilm).embed_documents([]) == []


def test_non_string_document_is_named(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int \(42\)"):
        LLMVecEmbeddings(minilm).embed_documents(["fine", 42])  # type: ignore[list-item]


def test_single_string_is_not_a_document_list(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"texts must be a list of strings, got str \('abc'\)"):
        LLMVecEmbeddings(minilm).embed_documents("abc")  # type: ignore[arg-type]


def test_none_query_is_named(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"text must be a str, got NoneType \(None\)"):
        LLMVecEmbeddings(minilm).embed_query(None)  # type: ignore[arg-type]


async def test_async_none_query_is_named(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"text must be a str, got NoneType"):
        await LLMVecEmbeddings(minilm).aembed_query(None)  # type: ignore[arg-type]


def test_encoder_and_arguments_are_exclusive(minilm: Encoder) -> None:
    with pytest.raises(ValueError, match=r"either an encoder or encoder arguments.*truncate_dim"):
        LLMVecEmbeddings(minilm, truncate_dim=64)


def test_model_name_in_place_of_encoder_is_explained() -> None:
    with pytest.raises(TypeError, match=r"got str \('smollm2'\).*model=\.\.\."):
        LLMVecEmbeddings("smollm2")  # type: ignore[arg-type]


async def test_concurrent_async_calls_are_serialised_and_match_sequential(
    minilm: Encoder,
) -> None:
    embeddings = LLMVecEmbeddings(minilm)
    documents = [f"{text} ({i})" for i in range(8) for text in TEXTS]
    expected_documents = embeddings.embed_documents(documents)
    expected_queries = [embeddings.embed_query(text) for text in TEXTS]
    with record_forward_passes(minilm) as log:
        results = await asyncio.gather(
            *(embeddings.aembed_documents(documents) for _ in range(4)),
            *(embeddings.aembed_query(text) for text in TEXTS),
        )
    assert len(log.batch_sizes) == 4 + len(TEXTS)
    assert log.max_concurrent == 1
    for got in results[:4]:
        np.testing.assert_allclose(got, expected_documents, atol=1e-5)
    np.testing.assert_allclose(results[4:], expected_queries, atol=1e-5)


async def test_async_encoding_leaves_the_event_loop_free(minilm: Encoder) -> None:
    embeddings = LLMVecEmbeddings(minilm)
    documents = [" ".join([text] * 20) for text in TEXTS * 20]
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    vectors = await embeddings.aembed_documents(documents)
    done.set()
    await beat
    assert len(vectors) == len(documents)
    assert ticks > 2, "the event loop was blocked while encoding"


async def test_wrappers_around_one_encoder_give_the_sequential_vectors(
    stopped_early: Encoder,
) -> None:
    wrappers = [LLMVecEmbeddings(stopped_early), LLMVecEmbeddings(stopped_early)]
    batches = [[f"{text} ({call})" for text in TEXTS * 2] for call in range(6)]
    results = await asyncio.gather(
        *(wrappers[call % 2].aembed_documents(batch) for call, batch in enumerate(batches))
    )
    for got, batch in zip(results, batches, strict=True):
        np.testing.assert_allclose(got, wrappers[0].embed_documents(batch), atol=1e-5)
