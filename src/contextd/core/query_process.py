"""Query embedding in a child process, outside the server's interpreter lock.

Under concurrent requests the server process's interpreter lock is its bottleneck, and a
forward pass run by one of its threads needs that lock around every torch operator
(about 200 per MiniLM forward): each time it queues behind the request threads. So the
forward passes of queries run in a child process (the program of
``core.document_process``, at the parent's CPU priority and with its own torch thread
team), and the parent's share is one dispatcher thread that

- takes every query waiting when the child comes free (at most ``max_batch``) and sends
  their texts as one batch over a socket: one forward pass in the child (a micro-batch, so
  concurrent requests share the model instead of queueing one by one);
- waits for the answer without the lock, and hands each caller its unit vector, its model
  tokens and its share of the child's CPU seconds.

The queries that arrive while the child embeds a batch go in the next one. Documents
never wait in this lane (they have their own child), so a query waits behind at most the
batch that was running when it arrived.

A child that dies is started again and the batch sent once more; when the retry fails
too, or a child cannot start, that batch's queries fail with :class:`Unavailable` (the
request gets a 503), and the next batch starts a fresh child. Nothing waits forever: a
start has ``start_timeout`` seconds, a batch ``batch_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from pathlib import Path

from contextd.core.document_process import DocumentProcess
from contextd.core.model_owner import QueryEmbedding
from contextd.core.telemetry import EMBED_BATCH, EMBED_SECONDS

log = logging.getLogger(__name__)


class QueryProcess:
    """The query lane: a child process embedding micro-batches, fed by one dispatcher
    thread; see the module docstring."""

    def __init__(self, model_path: Path, *, threads: int | None = 1, max_batch: int = 64,
                 start_timeout: float = 120.0, batch_timeout: float = 60.0) -> None:
        self.max_batch = max_batch
        self.child = DocumentProcess(model_path, threads=threads, nice=0,
                                     start_timeout=start_timeout,
                                     batch_timeout=batch_timeout, role="query")
        self.counts: Counter[str] = Counter()  # query_batches, queries
        self._cond = threading.Condition()
        self._queries: deque[tuple[str, Future[QueryEmbedding]]] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="contextd-query-process",
                                        daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The child's process id, while one runs."""
        return self.child.pid

    @property
    def dim(self) -> int:
        """The model's dimension (starts the child if none runs)."""
        return self.child.dim or self.child.start()

    def submit(self, text: str) -> Future[QueryEmbedding]:
        """Queue a query for the next batch."""
        future: Future[QueryEmbedding] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the query embedding process is closed")
            self._queries.append((text, future))
            self._cond.notify()
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Cancel the queries not yet sent, let the running batch finish, stop the child."""
        with self._cond:
            self._closed = True
            waiting = [future for _, future in self._queries]
            self._queries.clear()
            self._cond.notify()
        for future in waiting:
            future.cancel()
        self._thread.join(timeout)
        self.child.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._queries or self._closed):
                    self._cond.wait()
                if self._closed:
                    return
                taken = [self._queries.popleft()
                         for _ in range(min(self.max_batch, len(self._queries)))]
            batch = [(text, future) for text, future in taken
                     if future.set_running_or_notify_cancel()]
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[tuple[str, Future[QueryEmbedding]]]) -> None:
        self.counts["query_batches"] += 1
        self.counts["queries"] += len(batch)
        started = time.perf_counter()
        try:
            vectors, tokens, cpu = self.child.encode([text for text, _ in batch],
                                                     groups=[list(range(len(batch)))])
        except BaseException as exc:  # every caller hears of it, none waits forever
            log.warning("query batch of %d failed: %s", len(batch), exc,
                        extra={"event": "query_embedding_failed"})
            for _, future in batch:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        EMBED_SECONDS.labels("query").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("query").observe(len(batch))
        share = cpu / len(batch)
        for i, (_, future) in enumerate(batch):
            future.set_result(QueryEmbedding(vectors[i], int(tokens[i]), share, len(batch)))
