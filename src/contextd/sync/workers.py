"""Worker threads that run queued syncs, and one housekeeping thread beside them.

``threads`` sync threads each claim the oldest queued request (see
:mod:`contextd.state.sync_queue`) and run it; a request whose connector lease is held
elsewhere goes back to the queue, keeping its place, and that connector is skipped by
this thread for a few seconds. The housekeeping thread never runs a sync, so nothing it
does (queueing the scheduled runs that are due, returning requests whose worker died to
the queue, purging old finished requests) waits for a sync thread, nor delays one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.engine import Engine

from contextd.core.types import utcnow
from contextd.state.connectors import get_connector
from contextd.state.leases import try_acquire
from contextd.state.sync_queue import claim_next, claimed_before, finish, purge_done, requeue
from contextd.state.tables import SyncRequestRow

log = logging.getLogger(__name__)

_BUSY_BACKOFF_SECONDS = 5.0
_KEEP_DONE = timedelta(days=1)
_PURGE_EVERY_SECONDS = 600.0


class SyncWorkers:
    """Claim and run queued requests with ``handle`` (True: done; False: lease busy)."""

    def __init__(self, engine: Engine, handle: Callable[[SyncRequestRow], bool], *,
                 threads: int, poll_seconds: float, refresh_seconds: float,
                 stale_after_seconds: float,
                 queue_due: Callable[[], list[str]] | None = None,
                 lease_name: Callable[[str], str] | None = None) -> None:
        self.engine = engine
        self.id = uuid.uuid4().hex[:12]
        self._handle = handle
        self._threads = threads
        self._poll = poll_seconds
        self._refresh = refresh_seconds
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._lease_name = lease_name
        self._queue_due = queue_due
        self._schedules = False
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._tick = threading.Event()
        self._started: list[threading.Thread] = []
        self._housekeeping: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return bool(self._started) and not self._stop.is_set()

    @property
    def schedules(self) -> bool:
        return self._housekeeping is not None and self._schedules

    def start(self, *, schedules: bool) -> None:
        """Start the sync threads and the housekeeping thread (idempotent); with
        ``schedules`` the housekeeping thread also queues scheduled runs that are due."""
        with self._lock:
            self._schedules = self._schedules or schedules
            if not self._started:
                for n in range(self._threads):
                    thread = threading.Thread(target=self._work, daemon=True,
                                              name=f"contextd-sync-{n}")
                    thread.start()
                    self._started.append(thread)
                self._housekeeping = threading.Thread(target=self._keep, daemon=True,
                                                      name="contextd-sync-housekeeping")
                self._housekeeping.start()
        self.wake()

    def reschedule(self) -> None:
        """A connector was created or changed: look for due schedules now."""
        self._tick.set()

    def wake(self) -> None:
        """A request was queued or scheduling changed: look now, not at the next poll."""
        with self._wake:
            self._wake.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop claiming; each thread ends after its current run (which checkpoints).
        ``start`` may be called again afterwards."""
        with self._lock:
            self._stop.set()
            self._tick.set()
            self.wake()
            for thread in [*self._started, *([self._housekeeping] if self._housekeeping else [])]:
                thread.join(timeout=60)
            self._started, self._housekeeping, self._schedules = [], None, False
            self._stop.clear()

    # -- threads ---------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        with self._wake:
            if not self._stop.is_set():
                self._wake.wait(seconds)

    def _work(self) -> None:
        busy: dict[str, float] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            busy = {c: until for c, until in busy.items() if until > now}
            try:
                request = claim_next(self.engine, worker=self.id, skip=busy)
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("could not read the sync queue", extra={
                    "event": "sync_queue_error", "error": f"{type(exc).__name__}: {exc}"})
                self._sleep(self._poll)
                continue
            if request is None:
                self._sleep(self._poll)
                continue
            try:
                done = self._handle(request)
            except Exception as exc:  # never lose the thread; the request is retried
                log.error("queued run failed to start", exc_info=exc, extra={
                    "event": "sync_error", "connector_id": request.connector_id})
                done = False
            if not done:
                requeue(self.engine, request.id)
                busy[request.connector_id] = time.monotonic() + _BUSY_BACKOFF_SECONDS

    def _keep(self) -> None:
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                if self._schedules and self._queue_due is not None and self._queue_due():
                    self.wake()
                self._recover_orphans()
                if time.monotonic() - last_purge > _PURGE_EVERY_SECONDS:
                    purge_done(self.engine, before=utcnow() - _KEEP_DONE)
                    last_purge = time.monotonic()
            except Exception as exc:  # the next round tries again
                log.warning("sync housekeeping failed", extra={
                    "event": "sync_housekeeping_error",
                    "error": f"{type(exc).__name__}: {exc}"})
            self._tick.wait(self._refresh)
            self._tick.clear()

    def _recover_orphans(self) -> None:
        """Requests claimed long ago whose connector lease is free: the worker died mid-run
        (its run row is marked interrupted by the next run); queue them again."""
        if self._lease_name is None:
            return
        for request in claimed_before(self.engine, utcnow() - self._stale_after):
            try:
                name = self._lease_name(request.connector_id)
            except Exception:  # the connector was deleted
                finish(self.engine, request.id, run_id=None, outcome="skipped")
                continue
            lease = try_acquire(self.engine, name, ttl_seconds=5)
            if lease is None:
                continue  # still running somewhere
            try:
                requeue(self.engine, request.id)
                log.warning("a claimed run's worker is gone; queued again", extra={
                    "event": "sync_requeued", "connector_id": request.connector_id})
            finally:
                lease.release()


def connector_lease_name(engine: Engine) -> Callable[[str], str]:
    from contextd.sync.runs import lease_name

    return lambda connector_id: lease_name(get_connector(engine, connector_id))
