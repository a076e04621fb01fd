"""Configured connectors: validate, store, queue and run syncs, report status, delete.

The API routers and the command line call this. Runs are requested through the SQL queue
(:mod:`contextd.state.sync_queue`); in a process that runs syncs (role ``all`` or
``worker``) the :class:`SyncWorkers` threads claim and run them, in an API replica they
wait for a worker. Config is validated by the connector kind's model before anything is
saved; secrets are stored as given and only ever leave this module masked.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine

from contextd.connectors.base import LocalCheck
from contextd.connectors.limits import SourceLimits
from contextd.connectors.registry import build_connector, get_connector_class, validation_details
from contextd.connectors.secrets import check_endpoint_binding, mask_config, merge_config
from contextd.core.errors import ConfigError, Conflict, NotFound, Unavailable
from contextd.core.store import VectorStore, WriteBatch
from contextd.ingest.pipeline import Ingestor
from contextd.state import connectors as repo
from contextd.state import sync_queue as queue
from contextd.state.leases import try_acquire
from contextd.state.tables import ConnectorRow, QuarantineRow, SyncRequestRow, SyncRunRow
from contextd.sync.runs import RunSettings, execute_run, lease_name
from contextd.sync.scheduler import next_run_at, queue_due
from contextd.sync.specs import AclOverride, ScheduleSpec
from contextd.sync.workers import SyncWorkers, connector_lease_name

log = logging.getLogger(__name__)

_UNSET: Any = object()
# A request claimed this long ago whose connector lease is free lost its worker. A live
# worker takes the lease within milliseconds of claiming and holds it to the end.
_ORPHAN_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class ConnectorStatus:
    """healthy (last run succeeded), failing, paused, or pending (never finished a run);
    ``sync`` is idle, queued or running; ``queue_position`` is the place of its queued
    request in the whole queue (1 = next), also while an earlier run is running."""

    state: str
    running: bool
    sync: str
    queue_position: int | None
    last_run_at: datetime | None
    last_success_at: datetime | None
    lag_seconds: float | None
    last_error: str | None
    next_run_at: datetime | None
    quarantined: int


def _validated(model: type[BaseModel], value: Any, prefix: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return model.model_validate(value).model_dump(exclude_none=True)
    except ValidationError as exc:
        details = validation_details(exc, prefix)
        raise ConfigError(f"invalid {prefix}: " + ", ".join(d["field"] for d in details),
                          details=details) from None


def validate_config(name: str, kind: str, config: Any,
                    limits: SourceLimits | None = None) -> None:
    """ConfigError naming the field (``kind``, ``config.<field>``) unless ``config`` is valid,
    every path and host it names is within ``limits``, and it passes the kind's local
    checks (paths exist and have the right type)."""
    try:
        connector = build_connector(name, kind, config, limits)
    except (ValueError, UnicodeError) as exc:  # a value the model let through but cannot use
        raise ConfigError(f"invalid {kind} config: {exc}",
                          details=[{"field": "config", "message": str(exc)}]) from None
    try:
        if isinstance(connector, LocalCheck):
            connector.check_local()
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()


class ConnectorService:
    """Everything admins do with connectors, over the SQL state and the vector store."""

    def __init__(self, *, engine: Engine, store: VectorStore, ingestor: Any,
                 settings: RunSettings, max_workers: int = 4, refresh_seconds: float = 2.0,
                 poll_seconds: float = 1.0) -> None:
        self.engine = engine
        self.store = store
        self._ingestor = ingestor  # an Ingestor, or a zero-argument callable building one
        self.settings = settings
        self.workers = SyncWorkers(
            engine, self._handle, threads=max_workers, poll_seconds=poll_seconds,
            refresh_seconds=refresh_seconds,
            stale_after_seconds=_ORPHAN_AFTER_SECONDS,
            queue_due=lambda: queue_due(engine), lease_name=connector_lease_name(engine))
        self._stopping = threading.Event()
        self._futures: dict[str, Future[SyncRunRow | None]] = {}
        self._futures_lock = threading.Lock()

    @property
    def ingestor(self) -> Ingestor:
        if not isinstance(self._ingestor, Ingestor):
            self._ingestor = self._ingestor()
        return self._ingestor

    # -- lifecycle -----------------------------------------------------------------------

    def start_workers(self, *, schedules: bool = True) -> None:
        """Run queued syncs in this process; with ``schedules`` also queue the scheduled
        runs that come due (the ``all`` and ``worker`` roles)."""
        self.workers.start(schedules=schedules)

    def _should_stop(self) -> bool:
        return self._stopping.is_set() or self.workers.stopping

    def close(self) -> None:
        """Stop claiming; running syncs end after their current batch (checkpointed) and
        their requests stay queued for the next start."""
        self._stopping.set()
        self.workers.close()

    # -- CRUD ----------------------------------------------------------------------------

    def create(self, *, name: str, kind: str, config: Any, schedule: Any = None,
               acl: Any = None, enabled: bool = True) -> ConnectorRow:
        """Validate everything, then save and schedule; nothing is saved on any error."""
        validate_config(name, kind, config, self.settings.limits)
        row = ConnectorRow(id=repo.new_id(), name=name, kind=kind, config=dict(config),
                           schedule=_validated(ScheduleSpec, schedule, "schedule") or {},
                           acl=_validated(AclOverride, acl, "acl"), enabled=enabled)
        repo.create_connector(self.engine, row)
        self.workers.reschedule()  # its first run is due at once
        log.info("connector created", extra={"event": "connector_admin", "action": "create",
                                             "connector": name, "kind": kind})
        return row

    def all(self) -> list[ConnectorRow]:
        return repo.list_connectors(self.engine)

    def get(self, connector_id: str) -> ConnectorRow:
        return repo.get_connector(self.engine, connector_id)

    def update(self, connector_id: str, *, config: Any = _UNSET, schedule: Any = _UNSET,
               acl: Any = _UNSET, enabled: Any = _UNSET) -> ConnectorRow:
        """Apply a PATCH: config fields merge (secrets sent masked are kept, unless the PATCH
        moves the connector to another host: then they must be sent again)."""
        row = self.get(connector_id)
        if config is not _UNSET:
            if not isinstance(config, dict):
                raise ConfigError("config must be an object",
                                  details=[{"field": "config", "message": "expected an object"}])
            config_cls = get_connector_class(row.kind).Config
            check_endpoint_binding(config_cls, row.config, config)
            merged = merge_config(config_cls, row.config, config)
            validate_config(row.name, row.kind, merged, self.settings.limits)
            row.config = merged
        if schedule is not _UNSET:
            row.schedule = _validated(ScheduleSpec, schedule, "schedule") or {}
        if acl is not _UNSET:
            row.acl = _validated(AclOverride, acl, "acl")
        if enabled is not _UNSET and enabled is not None:
            row.enabled = bool(enabled)
        repo.save_connector(self.engine, row)
        self.workers.reschedule()
        log.info("connector updated", extra={"event": "connector_admin", "action": "update",
                                             "connector": row.name})
        return row

    def delete(self, connector_id: str, *, wait_seconds: float = 30.0) -> int:
        """Unschedule, wait for a running sync to end, purge store and SQL; documents removed."""
        row = self.get(connector_id)
        deadline = time.monotonic() + wait_seconds
        lease = try_acquire(self.engine, lease_name(row))
        while lease is None:
            if time.monotonic() > deadline:
                raise Conflict(f"connector {row.name!r} is syncing; retry the delete later")
            time.sleep(0.2)
            lease = try_acquire(self.engine, lease_name(row))
        try:
            self.store.write(WriteBatch(delete_sources=[row.name]))
            removed = repo.delete_connector_state(self.engine, row)
            queue.forget_connector(self.engine, row.id)
        finally:
            lease.release()
        log.info("connector deleted", extra={"event": "connector_admin", "action": "delete",
                                             "connector": row.name, "documents": removed})
        return removed

    # -- runs ----------------------------------------------------------------------------

    def _handle(self, request: SyncRequestRow) -> bool:
        """Run a claimed request; False when another process holds the connector's lease."""
        try:
            row = self.get(request.connector_id)
        except NotFound:
            queue.finish(self.engine, request.id, run_id=None, outcome="skipped")
            return True
        if request.trigger == "schedule" and not row.enabled:
            queue.finish(self.engine, request.id, run_id=None, outcome="skipped")
            return True
        run = execute_run(row.id, engine=self.engine, ingestor=self.ingestor,
                          settings=self.settings, trigger=request.trigger,
                          should_stop=self._should_stop)
        if run is None:
            return False
        if run.status == "interrupted" and self._should_stop():
            queue.requeue(self.engine, request.id)  # the next start resumes it
        else:
            queue.finish(self.engine, request.id, run_id=run.id, outcome=run.status)
        with self._futures_lock:
            future = self._futures.pop(request.id, None)
        if future is not None:
            future.set_result(run)
        return True

    def request_run(self, connector_id: str, *, trigger: str = "manual") -> SyncRequestRow:
        """Queue a run (joining one already queued) for a worker; returns the request."""
        self.get(connector_id)
        request = queue.enqueue(self.engine, connector_id=connector_id, trigger=trigger)
        self.workers.wake()
        return request

    def run_now(self, connector_id: str) -> Future[SyncRunRow | None]:
        """Queue a run and make sure this process's workers run queued syncs; the future
        yields the run when they run it."""
        request = self.request_run(connector_id)
        with self._futures_lock:
            future = self._futures.setdefault(request.id, Future())
        self.workers.start(schedules=False)
        return future

    def wait_for(self, request_id: str, *, timeout: float) -> SyncRunRow:
        """The run of a queued request once a worker finished it (API replicas)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request = queue.get_request(self.engine, request_id)
            if request is None or request.status == "done":
                if request is not None and request.run_id:
                    return repo.get_run(self.engine, request.run_id)
                raise Conflict("the run was skipped: the connector was deleted or paused")
            time.sleep(0.2)
        raise Unavailable(f"no worker finished the run within {timeout:.0f}s; it stays "
                          "queued (see GET /v1/connectors)")

    def run_blocking(self, connector_id: str, *, trigger: str = "manual") -> SyncRunRow:
        """Run now in this thread; Conflict when a run is already in progress."""
        row = self.get(connector_id)
        run = execute_run(row.id, engine=self.engine, ingestor=self.ingestor,
                          settings=self.settings, trigger=trigger)
        if run is None:
            raise Conflict(f"connector {row.name!r} is already syncing")
        return run

    def runs(self, connector_id: str, *, limit: int = 50) -> list[SyncRunRow]:
        self.get(connector_id)
        return repo.list_runs(self.engine, connector_id, limit=limit)

    def quarantine(self, connector_id: str, *, limit: int = 500) -> list[QuarantineRow]:
        self.get(connector_id)
        return repo.list_quarantine(self.engine, connector_id, limit=limit)

    # -- views ---------------------------------------------------------------------------

    def statuses(self, rows: list[ConnectorRow]) -> list[ConnectorStatus]:
        """The status of each of ``rows``, reading the queue and the marks once."""
        states, marks = queue.queue_states(self.engine), queue.schedule_marks(self.engine)
        return [self.status(row, queue_states=states, marks=marks) for row in rows]

    def status(self, row: ConnectorRow, *,
               queue_states: dict[str, queue.QueueState] | None = None,
               marks: dict[str, datetime] | None = None) -> ConnectorStatus:
        if queue_states is None:
            queue_states = queue.queue_states(self.engine)
        if marks is None:
            marks = queue.schedule_marks(self.engine)
        queued, mark = queue_states.get(row.id), marks.get(row.id)
        finished = repo.last_run(self.engine, row.id,
                                 statuses=("success", "partial", "failed"))
        success = repo.last_run(self.engine, row.id, statuses=("success", "partial"))
        latest = repo.last_run(self.engine, row.id)
        running = latest is not None and latest.status == "running"
        sync = "running" if running else (queued.state if queued else "idle")
        if not row.enabled:
            state = "paused"
        elif finished is None:
            state = "pending"
        else:
            state = "failing" if finished.status == "failed" else "healthy"
        last_success = success.finished_at if success else None
        return ConnectorStatus(
            state=state, running=running, sync=sync,
            queue_position=queued.position if queued else None,
            last_run_at=latest.started_at if latest else None,
            last_success_at=last_success, lag_seconds=repo.lag_seconds(last_success),
            last_error=finished.error if finished and finished.status == "failed" else None,
            next_run_at=next_run_at(row, mark),
            quarantined=repo.summary_counts(self.engine, row.id)["quarantined"])

    def public_config(self, row: ConnectorRow) -> dict[str, Any]:
        """The config as served: secrets masked."""
        return mask_config(get_connector_class(row.kind).Config, row.config)

