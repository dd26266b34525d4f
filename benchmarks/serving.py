"""`llmvec serve` under load: sentences/s and request latency at 1, 8 and 64 concurrent clients,
against one process calling `Encoder.encode` on the same texts, in the same run.

Each client sends requests of 1 to 32 STS-B test sentences (seeded), as the official `openai`
client does (base64 vectors), and every response is checked against the local encoder's vectors
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
    flags += ["--max-wait-ms", str(args.max_wait_ms)]
    if kind == "llmvec":
        return Server(kind, [sys.executable, "-m", "llmvec.cli", "serve", model, *flags], model)
    python = str(VLLM_VENV / "bin" / "python")
    if kind == "llmvec-vllm":
        command = [python, "-m", "llmvec.cli", "serve", model, "--backend", "vllm", *flags]
        return Server(kind, command, model)
    if kind == "vllm":
        from llmvec.models import gguf_as_folder, resolve_model

        folder = str(gguf_as_folder(resolve_model(model).path))
        command = [
            str(VLLM_VENV / "bin" / "vllm"), "serve", folder, "--port", str(port),
            "--runner", "pooling", "--served-model-name", model, "--max-model-len", "512",
            "--pooler-config", '{"pooling_type": "MEAN", "normalize": true}',
            "--dtype", "float32",
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


async def load(url: str, model: str, stream: list[list[list[str]]]) -> dict[str, Any]:
    """Every client sends its requests one after another; all clients at once."""
    latencies: list[float] = []
    vectors: dict[str, np.ndarray] = {}
    limits = httpx.Limits(max_connections=len(stream), max_keepalive_connections=len(stream))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def client(requests: list[list[str]]) -> None:
            for texts in requests:
                began = time.perf_counter()
                response = await http.post(
                    "/v1/embeddings",
                    json={"input": texts, "model": model, "encoding_format": "base64"},
                )
                latencies.append(time.perf_counter() - began)
                response.raise_for_status()
                for text, item in zip(texts, response.json()["data"], strict=True):
                    vectors[text] = np.frombuffer(base64.b64decode(item["embedding"]), "<f4")

        began = time.perf_counter()
        await asyncio.gather(*(client(requests) for requests in stream))
        elapsed = time.perf_counter() - began
    sent = sum(len(texts) for requests in stream for texts in requests)
    return {
        "clients": len(stream),
        "requests": len(latencies),
        "texts": sent,
        "seconds": round(elapsed, 3),
        "sentences_per_s": round(sent / elapsed, 2),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "_vectors": vectors,
    }


async def single_text_latency(url: str, model: str, texts: list[str]) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for text in texts:
            began = time.perf_counter()
            response = await http.post(
                "/v1/embeddings",
                json={"input": [text], "model": model, "encoding_format": "base64"},
            )
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,all-minilm-l6-v2")
    parser.add_argument("--servers", default="llmvec")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--sentences", type=int, default=1000, help="the pool texts are drawn from")
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--single-requests", type=int, default=50)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--output", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()
    args.concurrency = [int(part) for part in args.concurrency.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sts_sentences(args.sentences)
    report: dict[str, Any] = {
        "benchmark": "serving",
        "data": f"STS-B test sentence1, first {len(texts)} distinct; requests of 1-32 texts",
        "max_wait_ms": args.max_wait_ms,
        "versions": versions("uvicorn", "starlette", "httpx"),
        "machine": machine(),
        "results": {},
    }
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
