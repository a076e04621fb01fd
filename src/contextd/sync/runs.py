"""One recorded run of a configured connector: lease, run row, retries, quarantine, status.

The run row is written when the run starts and after every batch, so ``GET .../runs``
shows progress, and a run whose process died is visible (``interrupted``) and resumed by
the next one from the checkpoint. Auth and config errors end the run at once as
``failed`` with the source's message; transient errors are retried (see ``retry``), per
request by the connector and per run here: an unexpected error that does not look like a
bug in the code (see ``retry.is_transient_internal``) restarts the run from its last
checkpoint with the same policy, and ends it as ``internal_error`` only when that is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from contextd.connectors.limits import SourceLimits
from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError, ContextdError, SourceAuthError
from contextd.core.types import Batch, utcnow
from contextd.ingest.pipeline import Ingestor
from contextd.state.connectors import (
    get_connector,
    list_quarantine,
    mark_interrupted,
    quarantine,
    release_quarantine,
    save_run,
    start_run,
)
from contextd.state.leases import try_acquire
from contextd.state.tables import ConnectorRow, SyncRunRow
from contextd.sync.pull import SyncResult, run_sync
from contextd.sync.retry import RetryPolicy, is_transient_internal

log = logging.getLogger(__name__)


class RunStopped(Exception):
    """The service is shutting down: the run ends after its current batch."""


def lease_name(row: ConnectorRow) -> str:
    return f"connector:{row.name}"


@dataclass(frozen=True)
class RunSettings:
    """How runs retry, how long a SQLite row lease outlives a dead holder, and where
    connectors may reach (None: anywhere, as for the command line)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_ttl_seconds: float = 30.0
    quarantine_retry_limit: int = 500
    limits: SourceLimits | None = None


def _copy_counters(run: SyncRunRow, result: SyncResult) -> None:
    run.records_pulled = result.stats.records
    run.chunks_embedded = result.stats.chunks_embedded
    run.skipped_unchanged = result.stats.unchanged
    run.deleted = result.stats.deleted
    run.quarantined = len({f.source_id for f in result.failures})
    run.batches = result.batches
    run.attempts = max(1, result.attempts)


def execute_run(connector_id: str, *, engine: Engine, ingestor: Ingestor,
                settings: RunSettings, trigger: str = "schedule",
                should_stop: Callable[[], bool] = lambda: False) -> SyncRunRow | None:
    """Run the connector once; None when another run holds its lease (nothing is done).

    ``should_stop`` is asked after every batch; when it says yes the run ends there as
    ``interrupted`` and the next run resumes from that batch's checkpoint.
    """
    row = get_connector(engine, connector_id)
    if trigger == "schedule" and not row.enabled:
        return None  # paused through another replica since this one scheduled it
    lease = try_acquire(engine, lease_name(row), ttl_seconds=settings.lease_ttl_seconds)
    if lease is None:
        log.info("run skipped: another run holds the lease",
                 extra={"event": "sync_skipped", "connector": row.name, "trigger": trigger})
        return None
    try:
        mark_interrupted(engine, connector_id=row.id, exclude="")
        run = start_run(engine, connector_id=row.id, trigger=trigger)
        result: SyncResult | None = None

        def on_batch(progress: SyncResult, batch: Batch) -> None:
            if batch.failures:
                quarantine(engine, connector_id=row.id, failures=batch.failures)
            done = [r.source_id for r in batch.records] + [t.source_id for t in batch.tombstones]
            failed = {f.source_id for f in batch.failures}
            if done:
                release_quarantine(engine, connector_id=row.id,
                                   source_ids=[i for i in done if i not in failed])
            _copy_counters(run, progress)
            save_run(engine, run)
            lease.renew()
            if should_stop():
                raise RunStopped

        attempt = 0
        while True:
            attempt += 1
            connector = None
            try:
                connector = build_connector(row.name, row.kind, row.config, settings.limits)
                for step in settings.retry.retrying("check", connector=row.name):
                    with step:
                        connector.check()
                retry_ids = [q.source_id for q in list_quarantine(
                    engine, row.id, limit=settings.quarantine_retry_limit)]
                result = run_sync(connector, ingestor=ingestor, engine=engine,
                                  retry=settings.retry, acl=row.acl, retry_ids=retry_ids,
                                  on_batch=on_batch)
                _copy_counters(run, result)
                run.status = "partial" if result.failures else "success"
            except RunStopped:
                run.status = "interrupted"
                run.error = ("the service stopped mid-run; the next run resumes from the "
                             "checkpoint")
            except (SourceAuthError, ConfigError) as exc:
                _fail(run, exc.code, exc.message)
            except ContextdError as exc:
                _fail(run, exc.code, f"gave up after {settings.retry.attempts} attempts: "
                                     f"{exc.message}")
            except (TimeoutError, ConnectionError) as exc:
                _fail(run, "source_transient", f"gave up after {settings.retry.attempts} "
                                               f"attempts: {type(exc).__name__}: {exc}")
            except Exception as exc:
                if (is_transient_internal(exc) and attempt < settings.retry.attempts
                        and not should_stop()):
                    wait = settings.retry.backoff(attempt)
                    log.warning("run failed on an internal error; retrying from the "
                                "checkpoint", extra={
                                    "event": "sync_retry", "step": "run",
                                    "connector": row.name, "run_id": run.id,
                                    "attempt": attempt, "sleep_seconds": round(wait, 3),
                                    "error": f"{type(exc).__name__}: {exc}"})
                    time.sleep(wait)
                    continue
                log.error("run crashed", exc_info=exc,
                          extra={"event": "sync_error", "connector": row.name,
                                 "run_id": run.id, "attempts": attempt})
                error = f"{type(exc).__name__}: {exc}"
                _fail(run, "internal_error",
                      f"gave up after {attempt} attempts: {error}" if attempt > 1 else error)
            finally:
                close = getattr(connector, "close", None)
                if close is not None:
                    close()
            break
        run.attempts = max(run.attempts, attempt)
        run.finished_at = utcnow()
        save_run(engine, run)
        level = logging.WARNING if run.status == "failed" else logging.INFO
        log.log(level, "run finished", extra={
            "event": "sync_run", "connector": row.name, "run_id": run.id,
            "trigger": trigger, "status": run.status, "error_code": run.error_code,
            "error": run.error, "records_pulled": run.records_pulled,
            "chunks_embedded": run.chunks_embedded, "quarantined": run.quarantined})
        return run
    finally:
        lease.release()


def _fail(run: SyncRunRow, code: str, message: str) -> None:
    run.status = "failed"
    run.error_code = code
    run.error = message
