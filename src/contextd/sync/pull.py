"""Run one connector once: pull since the checkpoint, ingest each batch, checkpoint, reconcile.

The cursor is saved only after its batch is in the store and the documents table, so a
crash resumes from the last finished batch. After a complete pull, the ids the source
still lists are diffed with what we serve: anything gone is tombstoned even if the
source never reported the deletion.

A transient source error restarts the pull from the last checkpoint after a backoff
(``retry``); records already stored are then skipped by hash, so nothing is embedded twice.
Quarantined ids are re-read first through the connector's optional ``fetch(ids)``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from contextd.connectors.base import Connector
from contextd.core.telemetry import (
    SYNC_CHUNKS_EMBEDDED,
    SYNC_DELETED,
    SYNC_QUARANTINED,
    SYNC_RECORDS,
    SYNC_RUNS,
    SYNC_SKIPPED,
    span,
)
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone
from contextd.ingest.pipeline import Ingestor, IngestStats
from contextd.state.costs import record_cost
from contextd.state.documents import live_source_ids, load_cursor, save_cursor
from contextd.sync.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
NO_RETRY = RetryPolicy(attempts=1)


@dataclass
class SyncResult:
    """The outcome of one run."""

    connector: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stats: IngestStats = field(default_factory=IngestStats)
    batches: int = 0
    reconciled_deletions: int = 0
    failures: list[RecordFailure] = field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 0

    def summary(self) -> dict[str, Any]:
        return {"connector": self.connector, "run_id": self.run_id, "batches": self.batches,
                "failures": len(self.failures), "reconciled_deletions":
                self.reconciled_deletions, "seconds": round(self.seconds, 3),
                **self.stats.as_dict()}


def apply_acl(records: Sequence[SourceRecord], acl: Mapping[str, Any] | None
              ) -> Sequence[SourceRecord]:
    """A connector-level ACL override: ``replace`` the records' ACL or ``add`` to it."""
    if not acl:
        return records
    principals = tuple(acl["principals"])
    if acl.get("mode") == "add":
        return [dataclasses.replace(r, acl=tuple(dict.fromkeys((*r.acl, *principals))))
                for r in records]
    return [dataclasses.replace(r, acl=principals) for r in records]


def run_sync(connector: Connector, *, ingestor: Ingestor, engine: Engine,
             reconcile: bool = True, retry: RetryPolicy = NO_RETRY,
             acl: Mapping[str, Any] | None = None, retry_ids: Sequence[str] = (),
             on_batch: Callable[[SyncResult, Batch], None] | None = None) -> SyncResult:
    """Pull ``connector`` from its checkpoint and ingest everything it yields.

    ``on_batch`` runs after each batch is stored and checkpointed (progress, quarantine,
    lease renewal); ``retry_ids`` are quarantined ids to re-read before the pull.
    """
    started = time.perf_counter()
    result = SyncResult(connector=connector.name)
    outcome = "failed"

    def step(what: str, call: Callable[[], T]) -> T:
        for attempt in retry.retrying(what, connector=connector.name):
            with attempt:
                return call()
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def ingest(batch: Batch) -> None:
        with span("sync.batch", **{"contextd.records": len(batch.records)}):
            _ingest_batch(batch, connector, ingestor, engine, result, acl)
        if on_batch is not None:
            on_batch(result, batch)

    def pull_from_checkpoint() -> None:
        result.attempts += 1
        for batch in connector.pull(load_cursor(engine, name=connector.name)):
            ingest(batch)

    with span("sync.run", **{"contextd.connector": connector.name,
                             "contextd.connector_kind": connector.kind}) as run_span:
        try:
            fetch = getattr(connector, "fetch", None)
            if retry_ids and fetch is not None:
                ingest(step("fetch", lambda: fetch(list(retry_ids))))
            step("pull", pull_from_checkpoint)
            if reconcile:
                listed = step("list_ids", connector.list_ids)
                gone = live_source_ids(engine, source=connector.name) - set(listed)
                if gone:
                    stats = ingestor.ingest([], [Tombstone(connector.name, i)
                                                 for i in sorted(gone)])
                    result.stats.add(stats)
                    result.reconciled_deletions = len(gone)
                    SYNC_DELETED.labels(connector.name).inc(stats.deleted)
            optimize = getattr(ingestor.store, "optimize", None)
            if optimize is not None and result.stats.chunks_embedded:
                optimize()
            outcome = "partial" if result.failures else "success"
        finally:
            SYNC_RUNS.labels(connector.name, outcome).inc()
            result.seconds = time.perf_counter() - started
            for key, value in result.summary().items():
                run_span.set_attribute(f"contextd.{key}", value)
    record_cost(engine, kind="sync", ref=result.run_id, connector=connector.name,
                embed_tokens=result.stats.embed_tokens,
                embed_cpu_seconds=result.stats.embed_cpu_seconds)
    log.info("sync finished", extra={"event": "sync", "outcome": outcome, **result.summary()})
    return result


def _ingest_batch(batch: Batch, connector: Connector, ingestor: Ingestor,
                  engine: Engine, result: SyncResult, acl: Mapping[str, Any] | None) -> None:
    result.batches += 1
    if batch.records or batch.tombstones:
        stats = ingestor.ingest(apply_acl(batch.records, acl), batch.tombstones)
        result.stats.add(stats)
        name = connector.name
        SYNC_RECORDS.labels(name).inc(len(batch.records))
        SYNC_CHUNKS_EMBEDDED.labels(name).inc(stats.chunks_embedded)
        SYNC_SKIPPED.labels(name).inc(stats.unchanged)
        SYNC_DELETED.labels(name).inc(stats.deleted)
    SYNC_QUARANTINED.labels(connector.name).inc(len(batch.failures))
    for failure in batch.failures:
        log.warning("record failed", extra={"event": "record_failure",
                                            "connector": connector.name,
                                            "source_id": failure.source_id,
                                            "error": failure.error})
    result.failures.extend(batch.failures)
    if batch.cursor is not None:
        save_cursor(engine, name=connector.name, kind=connector.kind, cursor=dict(batch.cursor))
