"""The server's Prometheus metrics, in a registry of its own (several servers in one process
do not share counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_COUNT_BUCKETS = tuple(float(2**power) for power in range(13))
_TOKEN_BUCKETS = tuple(float(2**power) for power in range(4, 18))
_SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """Requests, inputs, tokens, batch sizes, queue waits, latencies and errors."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "llmvec_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "llmvec_errors", "error responses by OpenAI error type", ["type"], registry=registry
        )
        self.inputs = Counter("llmvec_inputs", "texts embedded", registry=registry)
        self.tokens = Counter(
            "llmvec_prompt_tokens", "tokens fed to the encoder", registry=registry
        )
        self.in_flight = Gauge(
            "llmvec_requests_in_flight", "requests in progress", registry=registry
        )
        self.latency = Histogram(
            "llmvec_request_seconds",
            "embedding request latency",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "llmvec_queue_wait_seconds",
            "time a request waits for its batch",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.batch_inputs = Histogram(
            "llmvec_batch_inputs",
            "texts per encoder call",
            buckets=_COUNT_BUCKETS,
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "llmvec_batch_tokens",
            "tokens per encoder call",
            buckets=_TOKEN_BUCKETS,
            registry=registry,
        )

    def batch(self, inputs: int, tokens: int) -> None:
        """One encoder call of ``inputs`` texts holding ``tokens`` tokens."""
        self.batch_inputs.observe(inputs)
        self.batch_tokens.observe(tokens)

    def queue_wait(self, seconds: float) -> None:
        """How long one request waited for its batch to start."""
        self.queue_wait_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
