"""Dynamic batching: requests that arrive together are tokenized as they come, coalesced into
one encoder call under a token budget and a short wait, and answered with the vectors each would
get alone (the encoder's batches are planned by length across requests; a vector does not depend
on its batch mates). One worker thread owns the encoder; a failing batch is retried request by
request, so that one bad request never fails the others."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from llmvec.backends.base import TokenizedText
from llmvec.encoder import Encoder
from llmvec.serving.protocol import ApiError, Side

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """One request's float vectors and the tokens the encoder fed for them."""

    vectors: np.ndarray
    tokens: int


class BatchObserver(Protocol):
    """What the batcher reports (the server's metrics)."""

    def batch(self, inputs: int, tokens: int) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...


@dataclass
class _Job:
    texts: list[str]
    side: Side
    submitted: float
    future: Future[Encoded] = field(default_factory=Future)
    inputs: list[TokenizedText] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(item.ids) for item in self.inputs)


_STOP = None


class Batcher:
    """Coalesces concurrent requests for one :class:`~llmvec.Encoder`.

    Args:
        encoder: the encoder; only the batcher's thread calls it.
        max_batch_tokens: a batch is closed once its requests hold this many tokens (a larger
            request runs alone; the encoder cuts it into its own batches).
        max_wait_s: how long the first request of a batch waits for others. ``0``: a batch
            starts as soon as the worker is free, with what has arrived; the requests that come
            while it runs form the next one (under load, batches fill without waiting).
        truncate: ``False`` answers a 400 for an input over the encoder's ``max_length``
            instead of cutting it.
        observer: told each batch's size and each request's queue wait.
    """

    def __init__(
        self,
        encoder: Encoder,
        max_batch_tokens: int = 16384,
        max_wait_s: float = 0.0,
        truncate: bool = True,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.encoder = encoder
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.truncate = truncate
        self.observer = observer
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: deque[_Job] = deque()
        self._thread = threading.Thread(target=self._run, name="llmvec-batcher", daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the worker thread."""
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress, refuse what is still queued (503), stop the thread."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join()
            self._started = False

    def submit(self, texts: list[str], side: Side) -> Future[Encoded]:
        """Queue one request's texts; the future gets its vectors or its error."""
        job = _Job(texts, side, time.perf_counter())
        if not self._started:
            job.future.set_exception(
                ApiError(503, "the server is not running", kind="server_error")
            )
            return job.future
        self._queue.put(job)
        return job.future

    # ------------------------------------------------------------------ the worker thread
    def _run(self) -> None:
        while True:
            if not self._pending:
                job = self._queue.get()
                if job is _STOP:
                    break
                self._admit(job)
            if not self._gather():
                break
            if self._pending:
                self._encode(self._take_batch())
        self._refuse_pending()

    def _gather(self) -> bool:
        """Admit what arrives until the budget is full or the first request has waited
        ``max_wait_s``; ``False`` once the batcher is told to stop."""
        deadline = time.perf_counter() + self.max_wait_s
        while sum(job.tokens for job in self._pending) < self.max_batch_tokens:
            remaining = deadline - time.perf_counter()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return True
            if job is _STOP:
                self._encode_all_pending()
                return False
            self._admit(job)
        return True

    def _admit(self, job: _Job) -> None:
        """Tokenize a request (a 400 for a bad one) and queue it for a batch."""
        if not job.future.set_running_or_notify_cancel():
            return  # the client went away
        try:
            job.inputs = self.encoder.tokenize(job.texts, instruction=self._instruction(job.side))
        except ValueError as error:
            job.future.set_exception(ApiError(400, str(error), param="input"))
            return
        if not self.truncate:
            long = [position for position, item in enumerate(job.inputs) if item.truncated]
            if long:
                job.future.set_exception(
                    ApiError(
                        400,
                        f"input[{long[0]}] is longer than this model's {self.encoder.max_length} "
                        "tokens (the server does not truncate)",
                        param="input",
                        code="context_length_exceeded",
                    )
                )
                return
        self._pending.append(job)

    def _take_batch(self) -> list[_Job]:
        """The first pending request and the later ones of its side that fit the budget."""
        side = self._pending[0].side
        batch: list[_Job] = []
        tokens = 0
        for job in list(self._pending):
            if job.side != side:
                continue
            if batch and tokens + job.tokens > self.max_batch_tokens:
                break
            batch.append(job)
            tokens += job.tokens
            self._pending.remove(job)
        return batch

    def _encode_all_pending(self) -> None:
        while self._pending:
            self._encode(self._take_batch())

    def _encode(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        if self.observer is not None:
            for job in batch:
                self.observer.queue_wait(start - job.submitted)
            self.observer.batch(sum(len(job.texts) for job in batch), sum(j.tokens for j in batch))
        try:
            vectors = self._vectors(batch)
        except Exception as error:
            if len(batch) > 1:
                for job in batch:
                    self._encode([job])
                return
            logger.exception("encoding a request of %d texts failed", len(batch[0].texts))
            batch[0].future.set_exception(error)
            return
        offset = 0
        for job in batch:
            rows = vectors[offset : offset + len(job.inputs)]
            offset += len(job.inputs)
            job.future.set_result(Encoded(rows, job.tokens))

    def _vectors(self, batch: list[_Job]) -> np.ndarray:
        inputs = [item for job in batch for item in job.inputs]
        vectors: np.ndarray = self.encoder.encode_inputs(
            inputs, instruction=self._instruction(batch[0].side)
        )
        return vectors

    def _instruction(self, side: Side) -> str | None:
        encoder = self.encoder
        return encoder.query_instruction if side == "query" else encoder.document_instruction

    def _refuse_pending(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(
                    ApiError(503, "the server is shutting down", kind="server_error")
                )
