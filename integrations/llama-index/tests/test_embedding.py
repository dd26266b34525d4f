"""LLMVecEmbedding behaviour: instructions, batching, output types, bad input, concurrency."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.embeddings.llmvec import LLMVecEmbedding

from llmvec import Encoder
from llmvec.testing import record_forward_passes

QUERY_INSTRUCTION = "Given a question, retrieve passages that answer it"
TEXT_INSTRUCTION = "Represent the passage for retrieval"
TEXTS = [
    f"Sentence number {i} talks about {topic}."
    for i in range(4)
    for topic in ("cats", "stock markets", "Paris")
]


@pytest.fixture(scope="module")
def stopped_early() -> Encoder:
    """MiniLM pooled at layer 3: each pass stops there by a hook on the model all callers share."""
    return Encoder("all-minilm-l6-v2", pooling="mean", layer=3, batch_size=2)


@pytest.fixture(scope="module")
def instructed() -> LLMVecEmbedding:
    """MiniLM with both instructions, built from keyword arguments."""
    return LLMVecEmbedding(
        model_name="all-minilm-l6-v2",
        pooling="mean",
        query_instruction=QUERY_INSTRUCTION,
        text_instruction=TEXT_INSTRUCTION,
        embed_batch_size=4,
    )


def test_arguments_reach_the_encoder(instructed: LLMVecEmbedding) -> None:
    spec = instructed.spec
    assert (spec.model, spec.pooling) == ("all-minilm-l6-v2", "mean")
    assert (spec.query_instruction, spec.document_instruction) == (
        QUERY_INSTRUCTION,
        TEXT_INSTRUCTION,
    )
    assert instructed.model_name == "all-minilm-l6-v2"
    assert (instructed.query_instruction, instructed.text_instruction) == (
        QUERY_INSTRUCTION,
        TEXT_INSTRUCTION,
    )
    assert instructed.encoder.batch_size == instructed.embed_batch_size == 4


def test_query_and_text_use_their_own_instruction(instructed: LLMVecEmbedding) -> None:
    encoder = instructed.encoder
    query = instructed.get_query_embedding(TEXTS[0])
    text = instructed.get_text_embedding(TEXTS[0])
    np.testing.assert_allclose(query, encoder.encode_queries(TEXTS[:1])[0], atol=1e-6)
    np.testing.assert_allclose(text, encoder.encode_documents(TEXTS[:1])[0], atol=1e-6)
    plain = encoder.encode(TEXTS[:1])[0]
    assert float(np.dot(query, text)) < 0.999
    assert float(np.dot(text, plain)) < 0.999


def test_batches_follow_embed_batch_size(instructed: LLMVecEmbedding) -> None:
    with record_forward_passes(instructed.encoder) as log:
        batched = instructed.get_text_embedding_batch(TEXTS)
    assert log.batch_sizes == [4, 4, 4]
    singles = [instructed.get_text_embedding(text) for text in TEXTS]
    np.testing.assert_allclose(batched, singles, atol=1e-5)

    # One batch of LlamaIndex's is still cut to embed_batch_size inputs per forward pass.
    with record_forward_passes(instructed.encoder) as log:
        instructed._get_text_embeddings(TEXTS)
    assert log.batch_sizes == [4, 4, 4]

    instructed.embed_batch_size = 5
    try:
        with record_forward_passes(instructed.encoder) as log:
            instructed.get_text_embedding_batch(TEXTS)
    finally:
        instructed.embed_batch_size = 4
    assert log.batch_sizes == [5, 5, 2]


def test_vectors_are_lists_of_python_floats(minilm: Encoder) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm)
    assert embed_model.embed_batch_size == minilm.batch_size
    rows = embed_model.get_text_embedding_batch(TEXTS[:3])
    query = embed_model.get_query_embedding("cats")
    assert all(type(x) is float for row in [*rows, query] for x in row)
    assert [len(row) for row in [*rows, query]] == [minilm.dim] * 4


def test_empty_list_gives_empty_list(minilm: Encoder) -> None:
    assert LLMVecEmbedding(encoder=minilm).get_text_embedding_batch([]) == []


def test_non_string_text_is_named_with_its_position(minilm: Encoder) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm, embed_batch_size=4)
    with pytest.raises(TypeError, match=r"texts\[9\] is int \(42\)"):
        embed_model.get_text_embedding_batch([*TEXTS[:9], 42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"text must be a str, got NoneType \(None\)"):
        embed_model.get_text_embedding(None)  # type: ignore[arg-type]


def test_single_string_is_not_a_text_list(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"texts must be a list of strings, got str \('abc'\)"):
        LLMVecEmbedding(encoder=minilm).get_text_embedding_batch("abc")  # type: ignore[arg-type]


def test_none_query_is_named(minilm: Encoder) -> None:
    with pytest.raises(TypeError, match=r"query must be a str, got NoneType \(None\)"):
        LLMVecEmbedding(encoder=minilm).get_query_embedding(None)  # type: ignore[arg-type]


async def test_async_bad_input_is_named(minilm: Encoder) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm)
    with pytest.raises(TypeError, match=r"query must be a str, got NoneType"):
        await embed_model.aget_query_embedding(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] is float \(1\.5\)"):
        await embed_model.aget_text_embedding_batch(["fine", 1.5])  # type: ignore[list-item]


def test_encoder_and_arguments_are_exclusive(minilm: Encoder) -> None:
    with pytest.raises(ValueError, match=r"either an encoder or encoder arguments.*truncate_dim"):
        LLMVecEmbedding(encoder=minilm, truncate_dim=64)
    with pytest.raises(ValueError, match=r"query_instruction"):
        LLMVecEmbedding(encoder=minilm, query_instruction=QUERY_INSTRUCTION)


def test_instructions_are_fixed_by_the_encoder(minilm: Encoder) -> None:
    embed_model = LLMVecEmbedding(encoder=minilm)
    with pytest.raises(ValidationError, match="frozen"):
        embed_model.query_instruction = QUERY_INSTRUCTION


async def test_concurrent_async_calls_are_serialised_and_match_sync(
    instructed: LLMVecEmbedding,
) -> None:
    embed_model = LLMVecEmbedding(encoder=instructed.encoder, embed_batch_size=2, num_workers=4)
    expected = embed_model.get_text_embedding_batch(TEXTS)
    expected_query = embed_model.get_query_embedding(TEXTS[0])
    with record_forward_passes(instructed.encoder) as log:
        *batches, query = await asyncio.gather(
            embed_model.aget_text_embedding_batch(TEXTS),
            embed_model.aget_text_embedding_batch(TEXTS),
            embed_model.aget_query_embedding(TEXTS[0]),
        )
    for got in batches:
        np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(query, expected_query, atol=1e-5)
    assert sorted(log.batch_sizes) == [1] + [2] * 12
    assert log.max_concurrent == 1


async def test_wrappers_around_one_encoder_give_the_sequential_vectors(
    stopped_early: Encoder,
) -> None:
    wrappers = [LLMVecEmbedding(encoder=stopped_early), LLMVecEmbedding(encoder=stopped_early)]
    batches = [[f"{text} ({call})" for text in TEXTS[:6]] for call in range(6)]
    results = await asyncio.gather(
        *(
            wrappers[call % 2].aget_text_embedding_batch(batch)
            for call, batch in enumerate(batches)
        ),
        *(wrappers[call % 2].aget_query_embedding(TEXTS[call]) for call in range(2)),
    )
    for got, batch in zip(results[: len(batches)], batches, strict=True):
        np.testing.assert_allclose(got, wrappers[0].get_text_embedding_batch(batch), atol=1e-5)
    for call, got in enumerate(results[len(batches) :]):
        np.testing.assert_allclose(got, wrappers[0].get_query_embedding(TEXTS[call]), atol=1e-5)
