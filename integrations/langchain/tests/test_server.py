"""An ``llmvec serve`` server on loopback, through LangChain's own ``OpenAIEmbeddings`` and
through ``LLMVecEmbeddings(base_url=...)``: the local encoder's vectors, and its spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_llmvec import LLMVecEmbeddings
from langchain_openai import OpenAIEmbeddings

from llmvec import Encoder
from llmvec.serving import RemoteEncoder
from llmvec.serving.app import ServerConfig, build_app
from llmvec.serving.server import running
from llmvec.testing import SAMPLE_INSTRUCTION as INSTRUCTION
from llmvec.testing import SAMPLE_TEXTS as TEXTS
from llmvec.testing import assert_same_vectors as assert_same
from llmvec.testing import row_cosines


@pytest.fixture(scope="module")
def encoder(tiny_llama: Path) -> Encoder:
    return Encoder(str(tiny_llama), query_instruction=INSTRUCTION, max_length=48)


@pytest.fixture(scope="module")
def server(encoder: Encoder) -> Iterator[str]:
    with running(build_app(encoder, ServerConfig(model_name="tiny"))) as (url, _):
        yield url


def test_openai_embeddings_give_the_local_document_vectors(server: str, encoder: Encoder) -> None:
    client = OpenAIEmbeddings(
        base_url=server + "/v1",
        api_key="unused",  # type: ignore[arg-type]
        model="tiny",
        check_embedding_ctx_length=False,
    )
    assert_same(client.embed_documents(TEXTS), encoder.encode_documents(TEXTS))


def test_base_url_gives_the_local_vectors_and_spec(server: str, encoder: Encoder) -> None:
    embeddings = LLMVecEmbeddings(base_url=server)
    assert isinstance(embeddings.encoder, RemoteEncoder)
    assert embeddings.spec == encoder.spec
    assert_same(embeddings.embed_documents(TEXTS), encoder.encode_documents(TEXTS))
    assert_same(embeddings.embed_query(TEXTS[3]), encoder.encode_queries(TEXTS[3:4]))
    # The two sides differ (the query carries the instruction), so neither stands for the other.
    query, document = embeddings.embed_query(TEXTS[3]), embeddings.embed_documents(TEXTS[3:4])[0]
    assert row_cosines(np.array([query]), np.array([document]))[0] < 0.9999
    assert embeddings.embed_documents([]) == []


async def test_async_methods(server: str, encoder: Encoder) -> None:
    embeddings = LLMVecEmbeddings(base_url=server + "/v1")
    assert_same(await embeddings.aembed_documents(TEXTS), encoder.encode_documents(TEXTS))
    assert_same(await embeddings.aembed_query(TEXTS[0]), encoder.encode_queries(TEXTS[:1]))


def test_an_existing_remote_encoder_is_used_as_it_is(server: str, encoder: Encoder) -> None:
    remote = RemoteEncoder(server, batch_size=2)
    embeddings = LLMVecEmbeddings(remote)
    assert embeddings.encoder is remote
    assert_same(embeddings.embed_documents(TEXTS), encoder.encode_documents(TEXTS))


def test_bad_argument_combinations(server: str, encoder: Encoder) -> None:
    with pytest.raises(ValueError, match=r"base_url.*\['encoder'\]"):
        LLMVecEmbeddings(encoder, base_url=server)
    with pytest.raises(ValueError, match=r"base_url.*\['query_instruction'\]"):
        LLMVecEmbeddings(base_url=server, query_instruction=INSTRUCTION)
    with pytest.raises(ValueError, match=r"api_key.*base_url"):
        LLMVecEmbeddings(encoder, api_key="k")
    with pytest.raises(ValueError, match=r"either an encoder or encoder arguments.*batch_size"):
        LLMVecEmbeddings(RemoteEncoder(server), batch_size=2)
    with pytest.raises(ConnectionError, match="cannot reach"):
        LLMVecEmbeddings(base_url="http://127.0.0.1:9")


def test_api_key(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMVEC_API_KEY", raising=False)
    with running(build_app(encoder, ServerConfig(model_name="tiny", api_key="k"))) as (url, _):
        embeddings = LLMVecEmbeddings(base_url=url, api_key="k")
        assert_same(embeddings.embed_query(TEXTS[0]), encoder.encode_queries(TEXTS[:1]))
        with pytest.raises(PermissionError, match="refused the API key"):
            LLMVecEmbeddings(base_url=url)
        with pytest.raises(PermissionError, match="refused the API key"):
            LLMVecEmbeddings(base_url=url, api_key="wrong")
