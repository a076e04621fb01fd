"""Rows a request adds without waiting for them: one writer thread per engine, group commit.

Every ``POST /v1/context`` adds four rows (its audit entry, the bundle served, its cost,
its outcome). Written by the request threads, each in its own transaction, they queued
on SQLite's single write lock and on the connection pool, and the reads of the next
requests (key, principals) waited behind them. Here a request only appends the row to a
queue; one thread per engine writes everything queued in one transaction. The writer
lets a batch gather for ``linger`` seconds after its first row: a transaction costs about
3 ms of the interpreter's time whatever its size, so with one transaction per request the
writer took a fifth of a request's CPU (measured in docs/performance.md).

Nothing is lost on the way:

- :func:`flush` waits until every row queued before it is written. The readers of these
  tables in this process call it first (``GET /v1/audit``, costs, quality metrics, the
  dashboard, feedback on a bundle), so the API always reads its own writes;
- :func:`close` (``Runtime.close``, at shutdown) writes what is queued before the pool is
  released;
- a batch the database refuses is retried row by row: one bad row is dropped (logged,
  counted in ``contextd_deferred_rows_total{outcome="dropped"}``), not its neighbours; a
  database that cannot be reached is retried for ``retry_seconds`` before the rows are
  dropped, as the post-response writes they replace did at once.

``contextd_deferred_rows_pending`` shows the queue; past ``max_pending`` rows (a database
that stopped writing) new rows are dropped and counted rather than held in memory.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session

from contextd.core.telemetry import DEFERRED_PENDING, DEFERRED_ROWS

log = logging.getLogger(__name__)


class DeferredWriter:
    """One thread writing the rows queued for ``engine``; see the module docstring."""

    def __init__(self, engine: Engine, *, max_batch: int = 500, max_pending: int = 50_000,
                 retry_seconds: float = 30.0, linger: float = 0.1) -> None:
        self.engine = engine
        self.linger = linger
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self._cond = threading.Condition()
        self._queue: deque[Any] = deque()
        self._queued = 0  # rows ever queued
        self._done = 0  # rows ever written or dropped (in queue order)
        self._closed = False
        self._flushing = 0  # callers waiting in flush(): the writer does not linger then
        self._thread = threading.Thread(target=self._loop, name="contextd-deferred-writer",
                                        daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return self._queued - self._done

    def add(self, *rows: Any) -> None:
        """Queue ``rows`` (SQLModel table objects) to be written; never blocks on SQL."""
        with self._cond:
            if self._closed or len(self._queue) + len(rows) > self.max_pending:
                self._count(len(rows), "dropped")
                log.error("deferred rows dropped: the writer is %s", "closed" if self._closed
                          else f"{self.max_pending} rows behind",
                          extra={"event": "deferred_rows_dropped", "rows": len(rows)})
                return
            wake = not self._queue or len(self._queue) + len(rows) >= self.max_batch
            self._queue.extend(rows)
            self._queued += len(rows)
            DEFERRED_PENDING.inc(len(rows))
            if wake:  # else the writer is already lingering on this batch
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued before this call is written (or dropped); False if
        that took longer than ``timeout`` seconds."""
        with self._cond:
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._done >= target, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return  # closed and drained
                self._linger()
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
            written = self._write(batch)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
            DEFERRED_PENDING.dec(len(batch))
            self._count(written, "written")
            self._count(len(batch) - written, "dropped")

    def _linger(self) -> None:
        """Let more rows join the batch: until ``linger`` seconds have passed, the batch is
        full, someone flushes or the writer closes. Called holding ``_cond``."""
        deadline = time.monotonic() + self.linger
        while len(self._queue) < self.max_batch and not self._closed and not self._flushing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _write(self, batch: Sequence[Any]) -> int:
        """Rows of ``batch`` written: all in one transaction, else one by one."""
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                self._commit(batch)
                return len(batch)
            except OperationalError as exc:  # unreachable or locked: retry the batch
                if time.monotonic() >= deadline or self._closed:
                    return self._one_by_one(batch, exc)
                time.sleep(0.5)
            except SQLAlchemyError as exc:  # a row the database refuses
                return self._one_by_one(batch, exc)

    def _one_by_one(self, batch: Sequence[Any], first: SQLAlchemyError) -> int:
        written = 0
        for row in batch:
            try:
                self._commit([row])
                written += 1
            except SQLAlchemyError as exc:
                log.warning("deferred row dropped", extra={
                    "event": "deferred_row_dropped", "table": _table(row),
                    "error": type(exc).__name__, "batch_error": type(first).__name__})
        return written

    def _commit(self, rows: Sequence[Any]) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            session.add_all(rows)
            session.commit()
            session.expunge_all()

    @staticmethod
    def _count(n: int, outcome: str) -> None:
        if n:
            DEFERRED_ROWS.labels(outcome).inc(n)


def _table(row: Any) -> str:
    return str(getattr(row, "__tablename__", type(row).__name__))


_WRITERS: weakref.WeakKeyDictionary[Engine, DeferredWriter] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def writer(engine: Engine) -> DeferredWriter:
    """The writer of ``engine`` in this process (started on first use)."""
    found = _WRITERS.get(engine)
    if found is None:
        with _LOCK:
            found = _WRITERS.get(engine)
            if found is None:
                found = _WRITERS[engine] = DeferredWriter(engine)
    return found


def add(engine: Engine, *rows: Any) -> None:
    """Queue ``rows`` for ``engine``'s writer."""
    writer(engine).add(*rows)


def flush(engine: Engine, timeout: float = 10.0) -> None:
    """Write what this process queued for ``engine`` (a no-op when nothing was)."""
    found = _WRITERS.get(engine)
    if found is not None:
        found.flush(timeout)


def close(engine: Engine) -> None:
    """Write what is queued for ``engine`` and stop its writer (before the pool is
    disposed)."""
    with _LOCK:
        found = _WRITERS.pop(engine, None)
    if found is not None:
        found.close()
