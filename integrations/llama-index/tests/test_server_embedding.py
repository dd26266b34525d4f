"""An ``llmvec serve`` server on loopback, through LlamaIndex's own ``OpenAILikeEmbedding`` and
through ``LLMVecEmbedding(base_url=...)``: the local encoder's vectors, and its spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from llama_index.embeddings.llmvec import LLMVecEmbedding
from llama_index.embeddings.openai_like import OpenAILikeEmbedding

from llmvec import Encoder
from llmvec.serving import RemoteEncoder
from llmvec.serving.app import ServerConfig, build_app
from llmvec.serving.server import running
from llmvec.testing import SAMPLE_INSTRUCTION as QUERY_INSTRUCTION
from llmvec.testing import SAMPLE_TEXTS as TEXTS
from llmvec.testing import assert_same_vectors as assert_same
from llmvec.testing import record_forward_passes, row_cosines


@pytest.fixture(scope="module")
def encoder(tiny_llama: Path) -> Encoder:
    return Encoder(str(tiny_llama), query_instruction=QUERY_INSTRUCTION, max_length=48)


@pytest.fixture(scope="module")
def server(encoder: Encoder) -> Iterator[str]:
    with running(build_app(encoder, ServerConfig(model_name="tiny"))) as (url, _):
        yield url


def test_openai_like_embedding_gives_the_local_document_vectors(
    server: str, encoder: Encoder
) -> None:
    client = OpenAILikeEmbedding(model_name="tiny", api_base=server + "/v1", api_key="unused")
    assert_same(client.get_text_embedding_batch(TEXTS), encoder.encode_documents(TEXTS))


def test_base_url_gives_the_local_vectors_and_spec(server: str, encoder: Encoder) -> None:
    embed_model = LLMVecEmbedding(base_url=server)
    assert isinstance(embed_model.encoder, RemoteEncoder)
    assert embed_model.spec == encoder.spec
    assert embed_model.model_name == encoder.model_name
    assert (embed_model.query_instruction, embed_model.text_instruction) == (
        QUERY_INSTRUCTION,
        None,
    )
    assert embed_model.embed_batch_size == embed_model.encoder.batch_size
    assert_same(embed_model.get_text_embedding_batch(TEXTS), encoder.encode_documents(TEXTS))
    assert_same(embed_model.get_text_embedding(TEXTS[0]), encoder.encode_documents(TEXTS[:1]))
    assert_same(embed_model.get_query_embedding(TEXTS[3]), encoder.encode_queries(TEXTS[3:4]))
    # The two sides differ (the query carries the instruction), so neither stands for the other.
    query = embed_model.get_query_embedding(TEXTS[3])
    document = embed_model.get_text_embedding(TEXTS[3])
    assert row_cosines(np.array([query]), np.array([document]))[0] < 0.9999
    assert embed_model.get_text_embedding_batch([]) == []


async def test_async_methods(server: str, encoder: Encoder) -> None:
    embed_model = LLMVecEmbedding(base_url=server + "/v1", embed_batch_size=2)
    got = await embed_model.aget_text_embedding_batch(TEXTS)
    assert_same(got, encoder.encode_documents(TEXTS))
    assert_same(await embed_model.aget_query_embedding(TEXTS[0]), encoder.encode_queries(TEXTS[:1]))


def test_embed_batch_size_is_the_texts_per_request(server: str, encoder: Encoder) -> None:
    embed_model = LLMVecEmbedding(base_url=server, embed_batch_size=2)
    with record_forward_passes(encoder) as passes:
        got = embed_model.get_text_embedding_batch(TEXTS)
    assert_same(got, encoder.encode_documents(TEXTS))
    assert passes.batch_sizes == [2, 2, 1]  # one request, and one forward pass, each


def test_an_existing_remote_encoder_is_used_as_it_is(server: str, encoder: Encoder) -> None:
    remote = RemoteEncoder(server, batch_size=3)
    embed_model = LLMVecEmbedding(encoder=remote)
    assert embed_model.encoder is remote
    assert embed_model.embed_batch_size == 3
    assert_same(embed_model.get_text_embedding_batch(TEXTS), encoder.encode_documents(TEXTS))


def test_bad_argument_combinations(server: str, encoder: Encoder) -> None:
    with pytest.raises(ValueError, match=r"base_url.*\['encoder'\]"):
        LLMVecEmbedding(encoder=encoder, base_url=server)
    with pytest.raises(ValueError, match=r"base_url.*\['query_instruction'\]"):
        LLMVecEmbedding(base_url=server, query_instruction=QUERY_INSTRUCTION)
    with pytest.raises(ValueError, match=r"base_url.*\['text_instruction'\]"):
        LLMVecEmbedding(base_url=server, text_instruction="Represent the passage")
    with pytest.raises(ValueError, match=r"base_url.*\['model_name', 'truncate_dim'\]"):
        LLMVecEmbedding("tiny", base_url=server, truncate_dim=16)
    with pytest.raises(ValueError, match=r"api_key.*base_url"):
        LLMVecEmbedding(encoder=encoder, api_key="k")
    with pytest.raises(ValueError, match=r"either an encoder or encoder arguments"):
        LLMVecEmbedding(encoder=RemoteEncoder(server), query_instruction=QUERY_INSTRUCTION)
    with pytest.raises(ConnectionError, match="cannot reach"):
        LLMVecEmbedding(base_url="http://127.0.0.1:9")


def test_api_key(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMVEC_API_KEY", raising=False)
    with running(build_app(encoder, ServerConfig(model_name="tiny", api_key="k"))) as (url, _):
        embed_model = LLMVecEmbedding(base_url=url, api_key="k")
        assert_same(embed_model.get_query_embedding(TEXTS[0]), encoder.encode_queries(TEXTS[:1]))
        with pytest.raises(PermissionError, match="refused the API key"):
            LLMVecEmbedding(base_url=url)
