"""Configured connectors: validate, store, schedule, run, report status, delete with purge.

The API routers and the command line call this; it owns the scheduler and the pool that
runs manual syncs. Config is validated by the connector kind's model before anything is
saved; secrets are stored as given and only ever leave this module masked.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine

from contextd.connectors.base import LocalCheck
from contextd.connectors.limits import SourceLimits
from contextd.connectors.registry import build_connector, get_connector_class, validation_details
from contextd.connectors.secrets import check_endpoint_binding, mask_config, merge_config
from contextd.core.errors import ConfigError, Conflict
from contextd.core.store import VectorStore, WriteBatch
from contextd.ingest.pipeline import Ingestor
from contextd.state import connectors as repo
from contextd.state.leases import try_acquire
from contextd.state.tables import ConnectorRow, QuarantineRow, SyncRunRow
from contextd.sync.runs import RunSettings, execute_run, lease_name
from contextd.sync.scheduler import ConnectorScheduler
from contextd.sync.specs import AclOverride, ScheduleSpec

log = logging.getLogger(__name__)

_UNSET: Any = object()


@dataclass(frozen=True)
class ConnectorStatus:
    """healthy (last run succeeded), failing, paused, or pending (never finished a run)."""

    state: str
    running: bool
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
                 settings: RunSettings, max_workers: int = 4,
                 refresh_seconds: float = 30.0) -> None:
        self.engine = engine
        self.store = store
        self._ingestor = ingestor  # an Ingestor, or a zero-argument callable building one
        self.settings = settings
        self.scheduler = ConnectorScheduler(self._scheduled_run, max_workers=max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="contextd-sync")
        self._stopping = threading.Event()
        self.refresh_seconds = refresh_seconds

    @property
    def ingestor(self) -> Ingestor:
        if not isinstance(self._ingestor, Ingestor):
            self._ingestor = self._ingestor()
        return self._ingestor

    # -- lifecycle -----------------------------------------------------------------------

    def start_scheduler(self) -> None:
        """Rebuild every schedule from the table (so they survive restarts) and start."""
        if not self.scheduler.running:
            self.scheduler.start(repo.list_connectors(self.engine),
                                 reload=lambda: repo.list_connectors(self.engine),
                                 refresh_seconds=self.refresh_seconds)

    def close(self) -> None:
        """Stop scheduling; running syncs end after their current batch (checkpointed)."""
        self._stopping.set()
        self.scheduler.shutdown(wait=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- CRUD ----------------------------------------------------------------------------

    def create(self, *, name: str, kind: str, config: Any, schedule: Any = None,
               acl: Any = None, enabled: bool = True) -> ConnectorRow:
        """Validate everything, then save and schedule; nothing is saved on any error."""
        validate_config(name, kind, config, self.settings.limits)
        row = ConnectorRow(id=repo.new_id(), name=name, kind=kind, config=dict(config),
                           schedule=_validated(ScheduleSpec, schedule, "schedule") or {},
                           acl=_validated(AclOverride, acl, "acl"), enabled=enabled)
        repo.create_connector(self.engine, row)
        if self.scheduler.running:
            self.scheduler.apply(row, run_first_now=True)
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
        if self.scheduler.running:
            self.scheduler.apply(row)
        log.info("connector updated", extra={"event": "connector_admin", "action": "update",
                                             "connector": row.name})
        return row

    def delete(self, connector_id: str, *, wait_seconds: float = 30.0) -> int:
        """Unschedule, wait for a running sync to end, purge store and SQL; documents removed."""
        row = self.get(connector_id)
        self.scheduler.remove(row.id)
        deadline = time.monotonic() + wait_seconds
        lease = try_acquire(self.engine, lease_name(row))
        while lease is None:
            if time.monotonic() > deadline:
                if self.scheduler.running:
                    self.scheduler.apply(row)
                raise Conflict(f"connector {row.name!r} is syncing; retry the delete later")
            time.sleep(0.2)
            lease = try_acquire(self.engine, lease_name(row))
        try:
            self.store.write(WriteBatch(delete_sources=[row.name]))
            removed = repo.delete_connector_state(self.engine, row)
        finally:
            lease.release()
        log.info("connector deleted", extra={"event": "connector_admin", "action": "delete",
                                             "connector": row.name, "documents": removed})
        return removed

    # -- runs ----------------------------------------------------------------------------

    def _scheduled_run(self, connector_id: str, trigger: str) -> SyncRunRow | None:
        try:
            return execute_run(connector_id, engine=self.engine, ingestor=self.ingestor,
                               settings=self.settings, trigger=trigger,
                               should_stop=self._stopping.is_set)
        except Exception as exc:  # a job must never take the scheduler thread down
            log.error("scheduled run failed to start", exc_info=exc,
                      extra={"event": "sync_error", "connector_id": connector_id})
            return None

    def run_now(self, connector_id: str) -> Future[SyncRunRow | None]:
        """Start a manual run in the background; the future yields the run (None: busy)."""
        self.get(connector_id)
        return self._pool.submit(self._scheduled_run, connector_id, "manual")

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

    def status(self, row: ConnectorRow) -> ConnectorStatus:
        finished = repo.last_run(self.engine, row.id,
                                 statuses=("success", "partial", "failed"))
        success = repo.last_run(self.engine, row.id, statuses=("success", "partial"))
        latest = repo.last_run(self.engine, row.id)
        running = latest is not None and latest.status == "running"
        if not row.enabled:
            state = "paused"
        elif finished is None:
            state = "pending"
        else:
            state = "failing" if finished.status == "failed" else "healthy"
        last_success = success.finished_at if success else None
        return ConnectorStatus(
            state=state, running=running,
            last_run_at=latest.started_at if latest else None,
            last_success_at=last_success, lag_seconds=repo.lag_seconds(last_success),
            last_error=finished.error if finished and finished.status == "failed" else None,
            next_run_at=self.scheduler.next_run_at(row.id) if self.scheduler.running else None,
            quarantined=repo.summary_counts(self.engine, row.id)["quarantined"])

    def public_config(self, row: ConnectorRow) -> dict[str, Any]:
        """The config as served: secrets masked."""
        return mask_config(get_connector_class(row.kind).Config, row.config)

