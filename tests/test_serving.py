"""`llmvec serve`: a real uvicorn server on loopback, called by real HTTP clients (httpx, the
official `openai` client, raw sockets), checked against the local encoder's vectors."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from llmvec import EmbeddingSpec, Encoder
from llmvec.compress import calibrate, quantize, truncate
from llmvec.serving import RemoteEncoder
from llmvec.serving.app import ServerConfig, build_app
from llmvec.serving.protocol import Limits
from llmvec.serving.server import running
from llmvec.testing import row_cosines

TEXTS = [
    "The honey bee dances to show where the flowers are.",
    "Paris is the capital of France.",
    "A quick brown fox jumps over the lazy dog",
    "Proteins fold into shapes that decide what they do in a cell, and misfolded ones clump.",
    "short",
    "Stock markets fell sharply on Monday after the announcement.",
    "How many legs does a spider have?",
    "Rain is expected over the weekend in the north.",
]
INSTRUCTION = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def encoder(tiny_llama: Path) -> Encoder:
    return Encoder(str(tiny_llama), query_instruction=INSTRUCTION, max_length=48)


@pytest.fixture(scope="module")
def server(encoder: Encoder) -> Iterator[str]:
    calibration = calibrate(encoder.encode_documents(TEXTS))
    config = ServerConfig(model_name="tiny", calibration=calibration, max_wait_s=0.005)
    with running(build_app(encoder, config)) as (url, _):
        yield url


def post(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + "/v1/embeddings", json=body, timeout=60, **kwargs)


def vectors_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    return np.array([item["embedding"] for item in data], dtype=np.float32)


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert row_cosines(a, b).min() > 0.9999


# ---------------------------------------------------------------------- the schema
def test_float_vectors_equal_the_local_encoders(server: str, encoder: Encoder) -> None:
    response = post(server, {"input": TEXTS, "model": "tiny"})
    assert_same(vectors_of(response), encoder.encode_documents(TEXTS))
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny"
    assert body["data"][0]["object"] == "embedding"


def test_a_single_string_is_one_input(server: str, encoder: Encoder) -> None:
    assert_same(vectors_of(post(server, {"input": TEXTS[0]})), encoder.encode_documents(TEXTS[:1]))


def test_input_type_chooses_the_instruction_side(server: str, encoder: Encoder) -> None:
    queries = vectors_of(post(server, {"input": TEXTS, "input_type": "query"}))
    assert_same(queries, encoder.encode_queries(TEXTS))
    cohere_style = vectors_of(post(server, {"input": TEXTS, "input_type": "search_query"}))
    assert_same(cohere_style, queries)
    documents = vectors_of(post(server, {"input": TEXTS, "input_type": "document"}))
    assert row_cosines(queries, documents).max() < 0.9999


def test_usage_counts_the_tokens_fed(server: str, encoder: Encoder) -> None:
    fed = sum(len(item.ids) for item in encoder.tokenize(TEXTS, instruction=INSTRUCTION))
    usage = post(server, {"input": TEXTS, "input_type": "query"}).json()["usage"]
    assert usage == {"prompt_tokens": fed, "total_tokens": fed}


def test_dimensions_truncate_then_normalise(server: str, encoder: Encoder) -> None:
    expected = truncate(encoder.encode_documents(TEXTS), 16)
    got = vectors_of(post(server, {"input": TEXTS, "dimensions": 16}))
    assert_same(got, expected)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    same = vectors_of(post(server, {"input": TEXTS, "dimensions": encoder.dim}))
    assert_same(same, encoder.encode_documents(TEXTS))


def test_base64_is_little_endian_float32(server: str) -> None:
    floats = vectors_of(post(server, {"input": TEXTS}))
    data = post(server, {"input": TEXTS, "encoding_format": "base64"}).json()["data"]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data])
    np.testing.assert_array_equal(decoded, floats)


def test_embedding_types_match_llmvec_quantize(server: str, encoder: Encoder) -> None:
    reference = encoder.encode_documents(TEXTS)
    calibration = calibrate(reference)
    kinds = ["float", "int8", "uint8", "binary", "ubinary"]
    data = post(server, {"input": TEXTS, "embedding_types": kinds}).json()["data"]
    assert "embedding" not in data[0]
    for kind in kinds:
        got = np.array([item["embeddings"][kind] for item in data])
        if kind == "float":
            assert_same(got.astype(np.float32), reference)
        else:
            np.testing.assert_array_equal(got, quantize(reference, kind, calibration))
    packed = post(
        server, {"input": TEXTS, "embedding_types": ["ubinary"], "encoding_format": "base64"}
    )
    rows = [base64.b64decode(d["embeddings"]["ubinary"]) for d in packed.json()["data"]]
    np.testing.assert_array_equal(
        np.stack([np.frombuffer(row, np.uint8) for row in rows]), quantize(reference, "ubinary")
    )


def test_models_lists_the_served_model_with_its_spec(server: str, encoder: Encoder) -> None:
    models = httpx.get(server + "/v1/models").json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "tiny" and card["object"] == "model"
    assert EmbeddingSpec.from_dict(card["llmvec_spec"]) == encoder.spec
    assert httpx.get(server + "/v1/models/tiny").json()["id"] == "tiny"
    assert httpx.get(server + "/v1/models/other").status_code == 404


def test_health_and_metrics(server: str) -> None:
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    post(server, {"input": TEXTS[:3]})
    post(server, {"input": []})
    text = httpx.get(server + "/metrics").text
    for name in (
        'llmvec_requests_total{route="/v1/embeddings",status="200"}',
        'llmvec_requests_total{route="/v1/embeddings",status="400"}',
        'llmvec_errors_total{type="invalid_request_error"}',
        "llmvec_inputs_total",
        "llmvec_prompt_tokens_total",
        "llmvec_batch_inputs_bucket",
        "llmvec_batch_tokens_bucket",
        "llmvec_queue_wait_seconds_bucket",
        "llmvec_requests_in_flight",
    ):
        assert name in text, name


# ---------------------------------------------------------------------- bad requests
BAD_BODIES = [
    ({"model": "tiny"}, "'input' is required"),
    ({"input": []}, "must not be empty"),
    ({"input": ""}, "empty string"),
    ({"input": ["ok", ""]}, "input[1] is an empty string"),
    ({"input": [1, 2, 3]}, "token-id input is not supported"),
    ({"input": [[1, 2], [3]]}, "token-id input is not supported"),
    ({"input": 5}, "a string or a list of strings"),
    ({"input": ["ok", 5]}, "input[1] must be a string"),
    ({"input": "ok", "model": 3}, "'model' must be a string"),
    ({"input": "ok", "dimensions": "8"}, "'dimensions' must be a positive integer"),
    ({"input": "ok", "dimensions": 0}, "'dimensions' must be a positive integer"),
    ({"input": "ok", "dimensions": True}, "'dimensions' must be a positive integer"),
    ({"input": "ok", "dimensions": 65}, "above this model's 64"),
    ({"input": "ok", "encoding_format": "hex"}, "'encoding_format' must be one of"),
    ({"input": "ok", "input_type": "passage"}, "'input_type' must be one of"),
    ({"input": "ok", "embedding_types": "int8"}, "'embedding_types' must be a non-empty list"),
    ({"input": "ok", "embedding_types": ["int4"]}, "'embedding_types' must be a non-empty list"),
    ({"input": "ok", "embedding_types": ["int8"], "dimensions": 8}, "needs per-dimension ranges"),
    (["input", "ok"], "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_requests_are_400s_in_openais_shape(server: str, body: Any, message: str) -> None:
    response = post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"", "body is empty"), (b"\xff\xfe", "not valid JSON")],
)
def test_malformed_bodies_are_400s(server: str, content: bytes, message: str) -> None:
    response = httpx.post(
        server + "/v1/embeddings", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_unknown_model_route_and_method(server: str) -> None:
    wrong = post(server, {"input": "ok", "model": "text-embedding-3-small"})
    assert wrong.status_code == 404
    assert wrong.json()["error"]["code"] == "model_not_found"
    assert "'tiny'" in wrong.json()["error"]["message"]
    assert httpx.get(server + "/v2/embed").json()["error"]["message"] == "Not Found"
    assert httpx.get(server + "/v1/embeddings").status_code == 405


def test_limits(encoder: Encoder) -> None:
    limits = Limits(max_inputs=4, max_input_chars=400, max_request_bytes=4000, truncate=False)
    with running(build_app(encoder, ServerConfig(limits=limits))) as (url, _):
        assert "at most 4 per request" in post(url, {"input": TEXTS}).json()["error"]["message"]
        too_long = post(url, {"input": ["x" * 401]})
        assert "401 characters" in too_long.json()["error"]["message"]
        big = post(url, {"input": ["word " * 9] * 4, "pad": "y" * 5000})
        assert big.status_code == 413
        over_tokens = post(url, {"input": ["bee " * 60, "ok"]})  # over max_length=48 tokens
        assert over_tokens.status_code == 400
        assert over_tokens.json()["error"]["code"] == "context_length_exceeded"
        assert "input[0]" in over_tokens.json()["error"]["message"]
        assert post(url, {"input": ["a short one"]}).status_code == 200


def test_long_inputs_are_cut_as_the_encoder_cuts_them(server: str, encoder: Encoder) -> None:
    long = ["bees " * 200, TEXTS[1]]
    assert_same(vectors_of(post(server, {"input": long})), encoder.encode_documents(long))


def test_api_key(encoder: Encoder) -> None:
    with running(build_app(encoder, ServerConfig(api_key="s3cret"))) as (url, _):
        assert post(url, {"input": "ok"}).status_code == 401
        wrong = post(url, {"input": "ok"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(url + "/v1/models").status_code == 401
        right = post(url, {"input": "ok"}, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert httpx.get(url + "/health").status_code == 200
        with pytest.raises(PermissionError, match="refused the API key"):
            RemoteEncoder(url, api_key="nope")
        remote = RemoteEncoder(url, api_key="s3cret")
        assert_same(remote.encode_documents(TEXTS), encoder.encode_documents(TEXTS))


# ---------------------------------------------------------------------- real clients
def test_the_official_openai_client(server: str, encoder: Encoder) -> None:
    import openai

    client = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    # The client asks for base64 unless told otherwise, and decodes it with numpy.
    created = client.embeddings.create(input=TEXTS, model="tiny")
    got = np.array([item.embedding for item in created.data], dtype=np.float32)
    assert_same(got, encoder.encode_documents(TEXTS))
    fed = sum(len(item.ids) for item in encoder.tokenize(TEXTS))
    assert created.usage.prompt_tokens == fed
    as_floats = client.embeddings.create(
        input=TEXTS[:2],
        model="tiny",
        encoding_format="float",
        dimensions=32,
        extra_body={"input_type": "query"},
    )
    expected = truncate(encoder.encode_queries(TEXTS[:2]), 32)
    assert_same(np.array([item.embedding for item in as_floats.data], np.float32), expected)
    with pytest.raises(openai.BadRequestError, match="token-id input"):
        client.embeddings.create(input=[[1, 2, 3]], model="tiny")


def test_remote_encoder_is_the_servers_spec(server: str, encoder: Encoder) -> None:
    remote = RemoteEncoder(server + "/v1/", batch_size=3)
    assert remote.spec == encoder.spec and remote.dim == encoder.dim
    assert_same(remote.encode_queries(TEXTS), encoder.encode_queries(TEXTS))
    assert_same(remote.encode_documents(TEXTS), encoder.encode_documents(TEXTS))
    assert remote.encode_documents([]).shape == (0, encoder.dim)
    with pytest.raises(ValueError, match="must start with http"):
        RemoteEncoder("localhost:8080")
    with pytest.raises(ConnectionError, match="cannot reach"):
        RemoteEncoder("http://127.0.0.1:9")


# ---------------------------------------------------------------------- dynamic batching
def test_concurrent_clients_get_their_own_vectors(encoder: Encoder) -> None:
    """64 clients for a bounded time, 1 to 32 texts each, queries and documents mixed: every
    response equals the local encoder's vectors of that request alone."""
    pool = [f"{TEXTS[i % len(TEXTS)]} (variant {i})" for i in range(96)]
    documents = dict(zip(pool, encoder.encode_documents(pool), strict=True))
    queries = dict(zip(pool, encoder.encode_queries(pool), strict=True))
    app = build_app(encoder, ServerConfig(max_batch_tokens=4096))
    deadline = time.monotonic() + 6.0
    checked: list[int] = []
    with running(app) as (url, _):

        def client(seed: int) -> int:
            rng = random.Random(seed)
            done = 0
            with httpx.Client(base_url=url, timeout=120) as http:
                while time.monotonic() < deadline:
                    texts = rng.sample(pool, rng.randint(1, 32))
                    side = rng.choice(["query", "document"])
                    got = vectors_of(
                        http.post("/v1/embeddings", json={"input": texts, "input_type": side})
                    )
                    reference = queries if side == "query" else documents
                    assert_same(got, np.stack([reference[text] for text in texts]))
                    done += 1
            return done

        with ThreadPoolExecutor(64) as workers:
            checked = list(workers.map(client, range(64)))
        metrics = httpx.get(url + "/metrics").text
    requests = sum(checked)
    assert requests >= 64
    batches = _metric(metrics, "llmvec_batch_inputs_count")
    assert batches < requests, "concurrent requests were never coalesced into one batch"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics")


def test_one_failing_request_never_fails_its_batch_mates(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = "this text breaks the encoder"
    poison_ids = encoder.tokenize([poison])[0].ids
    original = encoder.encode_inputs

    def fragile(inputs: Any, **kwargs: Any) -> Any:
        if any(item.ids == poison_ids for item in inputs):
            raise RuntimeError("poisoned batch")
        return original(inputs, **kwargs)

    monkeypatch.setattr(encoder, "encode_inputs", fragile)
    app = build_app(encoder, ServerConfig(max_wait_s=0.2))
    with running(app) as (url, _):
        bodies = [{"input": [text]} for text in TEXTS[:4]] + [{"input": [poison]}]
        with ThreadPoolExecutor(len(bodies)) as workers, encoder._lock:
            # Held lock: every request queues before the first batch is formed.
            futures = [workers.submit(post, url, body) for body in bodies]
            time.sleep(0.3)
        responses = [future.result() for future in futures]
        metrics = httpx.get(url + "/metrics").text
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 500]
    assert "poisoned batch" in responses[-1].json()["error"]["message"]
    for text, response in zip(TEXTS[:4], responses, strict=False):
        assert_same(vectors_of(response), original([encoder.tokenize([text])[0]]))
    assert _metric(metrics, "llmvec_batch_inputs_count") >= 2


def test_clients_that_disconnect_do_not_hurt_the_server(server: str, encoder: Encoder) -> None:
    host, port = server.removeprefix("http://").split(":")
    body = json.dumps({"input": TEXTS * 20}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for sent in (head + body[:10], head + body):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(sent)
        # closed before (half the body) or while (all of it) the server answers
    assert_same(vectors_of(post(server, {"input": TEXTS})), encoder.encode_documents(TEXTS))


# ---------------------------------------------------------------------- draining
def test_a_drain_finishes_requests_in_flight_and_refuses_new_ones(encoder: Encoder) -> None:
    app = build_app(encoder)
    service = app.state.service
    with running(app) as (url, server):
        # The request in flight waits for the encoder (the lock is released first on exit).
        with ThreadPoolExecutor(1) as workers, encoder._lock:
            in_flight = workers.submit(post, url, {"input": TEXTS})
            while service.in_flight == 0:
                time.sleep(0.01)
            server.handle_exit(signal.SIGTERM, None)
            refused = post(url, {"input": TEXTS})
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "server_error"
            assert httpx.get(url + "/health").status_code == 503
            assert not in_flight.done()
        assert_same(vectors_of(in_flight.result()), encoder.encode_documents(TEXTS))
        deadline = time.monotonic() + 10
        while not server.should_exit and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.should_exit


def test_llmvec_serve_exits_cleanly_on_sigterm(tiny_llama: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmvec.cli", "serve", str(tiny_llama), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server never came up"
            time.sleep(0.2)
        assert post(url, {"input": TEXTS}).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        log = process.stdout.read().decode()  # type: ignore[union-attr]
    assert "127.0.0.1" in log


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--max-batch-tokens", "0"], "--max-batch-tokens must be a positive integer"),
        (["--max-wait-ms", "-1"], "--max-wait-ms must not be negative"),
        (["--calibration", "CALIBRATION"], "must be [[low, ...], [high, ...]]"),
    ],
)
def test_bad_flags_fail_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    from llmvec.cli import main

    bad = tmp_path / "calibration.json"
    bad.write_text("[[0.0], [1.0, 2.0]]")
    flags = [str(bad) if flag == "CALIBRATION" else flag for flag in flags]
    assert main(["serve", "no/such/model", *flags]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- a server as the encoder
def test_index_and_search_through_a_server(
    server: str, encoder: Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmvec.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    for number, text in enumerate(TEXTS):
        (folder / f"{number}.txt").write_text(text + "\n", encoding="utf-8")
    store = f"faiss:{tmp_path / 'store'}"
    assert main(["index", str(folder), "--store", store, "--server", server]) == 0
    assert "8 chunks encoded" in capsys.readouterr().out
    assert main(["search", "capital of France", "--store", store, "--server", server]) == 0
    remote_hits = capsys.readouterr().out
    # The same store searched with the local encoder that the stored spec names.
    assert main(["search", "capital of France", "--store", store]) == 0
    assert capsys.readouterr().out == remote_hits
    assert len(remote_hits.splitlines()) == 5


def test_a_server_whose_vectors_differ_is_refused_by_the_store(
    server: str,
    encoder: Encoder,
    tiny_llama: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llmvec import FaissIndex
    from llmvec.cli import main

    index = FaissIndex(RemoteEncoder(server))
    index.add(TEXTS, ids=list(range(len(TEXTS))))
    local = FaissIndex(encoder)
    local.add(TEXTS, ids=list(range(len(TEXTS))))
    question = "What is the capital of France?"
    assert [h.id for h in index.search(question, k=3)] == [
        h.id for h in local.search(question, k=3)
    ]
    index.save(tmp_path / "store")
    other = Encoder(str(tiny_llama), pooling="last_token", query_instruction=INSTRUCTION)
    with running(build_app(other)) as (url, _):
        store = f"faiss:{tmp_path / 'store'}"
        assert main(["search", "France", "--store", store, "--server", url]) == 2
        assert "pooling" in capsys.readouterr().err
        folder = tmp_path / "more"
        folder.mkdir()
        (folder / "a.txt").write_text("more text\n", encoding="utf-8")
        assert main(["index", str(folder), "--store", store, "--server", url]) == 2
        assert "pooling" in capsys.readouterr().err
    assert len(FaissIndex.load(tmp_path / "store")) == len(TEXTS)


@pytest.mark.slow
def test_minilm_served_equals_minilm_local(minilm: Encoder) -> None:
    import openai

    sentences = [line for line in TEXTS for _ in range(4)]
    with running(build_app(minilm)) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        created = client.embeddings.create(input=sentences, model=minilm.model_name)
    got = np.array([item.embedding for item in created.data], dtype=np.float32)
    assert_same(got, minilm.encode_documents(sentences))
