"""The one thread that runs the embedding model and its tokenizer, queries first.

A HuggingFace fast tokenizer must not be used from two threads at once (its truncation
and padding settings are state of the shared Rust object: counting tokens on one thread
while another encodes a batch can break that batch with ``Unable to create tensor``), and
torch runs best with one warm thread team instead of one per caller. So every use of the
model and its tokenizer is a job on this thread.

Two lanes, so serving never waits for ingest:

- **queries**: every query waiting when the thread comes free runs in one forward pass
  (a micro-batch), so concurrent requests share the model instead of queueing one by one;
- **documents**: ingest cuts its batches into small jobs (a few chunks, a few hundred
  tokens) queued behind any waiting query. A query therefore waits behind at most one
  document job: the one running when it arrived, or the one let through after
  ``documents_every`` query batches so that a steady stream of queries cannot starve ingest.

Small jobs a caller waits on (loading the model) go in an urgent lane ahead of both.
``counts`` and each result's ``waited_documents`` make the ordering checkable.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueryEmbedding:
    """One query's unit vector, its model tokens, and its share of the batch's CPU time."""

    vector: np.ndarray
    tokens: int
    cpu_seconds: float
    batch_size: int = 1
    waited_documents: int = 0  # document jobs run between submission and this query's batch


@dataclass(frozen=True, slots=True)
class DocumentEmbedding:
    """Unit vectors of a batch of documents, the model tokens and the CPU seconds they
    cost."""

    vectors: np.ndarray
    tokens: int
    cpu_seconds: float


@dataclass(slots=True)
class _Query:
    text: str
    future: Future[QueryEmbedding]
    documents_before: int  # document jobs started when it was queued
    document_running: bool


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[], T]
    future: Future[T]


RunQueries = Callable[[Sequence[str]], Sequence[tuple[np.ndarray, int, float]]]


class ModelThread:
    """A daemon thread serving the lanes above; see the module docstring."""

    def __init__(self, run_queries: RunQueries, *, max_query_batch: int = 64,
                 documents_every: int = 4, name: str = "contextd-model") -> None:
        self._run_queries = run_queries
        self.max_query_batch = max_query_batch
        self.documents_every = documents_every
        self.counts: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._urgent: deque[_Job[Any]] = deque()
        self._queries: deque[_Query] = deque()
        self._documents: deque[_Job[Any]] = deque()
        self._running: str | None = None
        self._since_document = 0  # query batches and urgent jobs since the last document job
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit_query(self, text: str) -> Future[QueryEmbedding]:
        future: Future[QueryEmbedding] = Future()
        with self._cond:
            self._check_open()
            self._queries.append(_Query(text, future, self.counts["document_jobs"],
                                        self._running == "document"))
            self._cond.notify()
        return future

    def submit(self, fn: Callable[[], T], *, urgent: bool = False) -> Future[T]:
        """Run ``fn`` on the model thread: in the urgent lane or as one document job."""
        future: Future[T] = Future()
        with self._cond:
            self._check_open()
            (self._urgent if urgent else self._documents).append(_Job(fn, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        """Cancel what has not started and let the thread end after its current job."""
        with self._cond:
            self._closed = True
            futures: list[Future[Any]] = [
                item.future for lane in (self._urgent, self._queries, self._documents)
                for item in lane]
            for lane in (self._urgent, self._queries, self._documents):
                lane.clear()
            self._cond.notify()
        for future in futures:
            future.cancel()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the model thread is closed")

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._urgent or self._queries or self._documents or self._closed):
                    self._cond.wait()
                if self._closed:
                    return
                work = self._next()
            try:
                work()
            finally:
                with self._cond:
                    self._running = None

    def _next(self) -> Callable[[], None]:
        """The next piece of work, taken off its lane (called with the lock held)."""
        starving = self._since_document >= self.documents_every
        if self._documents and (starving or not (self._urgent or self._queries)):
            self._since_document = 0
            self._running = "document"
            self.counts["document_jobs"] += 1
            return _runner(self._documents.popleft())
        self._since_document += 1
        if self._urgent:
            self._running = "urgent"
            self.counts["urgent_jobs"] += 1
            return _runner(self._urgent.popleft())
        batch = [self._queries.popleft()
                 for _ in range(min(self.max_query_batch, len(self._queries)))]
        self._running = "queries"
        self.counts["query_batches"] += 1
        self.counts["queries"] += len(batch)
        documents_now = self.counts["document_jobs"]
        return lambda: self._serve(batch, documents_now)

    def _serve(self, batch: list[_Query], documents_now: int) -> None:
        batch = [q for q in batch if q.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self._run_queries([q.text for q in batch])
        except BaseException as exc:
            for query in batch:
                query.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for query, (vector, tokens, cpu) in zip(batch, results, strict=True):
            waited = documents_now - query.documents_before + int(query.document_running)
            query.future.set_result(QueryEmbedding(vector, tokens, cpu, len(batch), waited))


def _runner(job: _Job[Any]) -> Callable[[], None]:
    def run() -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn())
        except BaseException as exc:
            job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    return run
