"""Run one connector once: pull since the checkpoint, ingest each batch, checkpoint, reconcile.

The cursor is saved only after its batch is in the store and the documents table, so a
crash resumes from the last finished batch. After a complete pull, the ids the source
still lists are diffed with what we serve: anything gone is tombstoned even if the
source never reported the deletion.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

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
from contextd.core.types import Batch, RecordFailure, Tombstone
from contextd.ingest.pipeline import Ingestor, IngestStats
from contextd.memory.costs import record_cost
from contextd.memory.documents import live_source_ids, load_cursor, save_cursor

log = logging.getLogger(__name__)


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

    def summary(self) -> dict[str, Any]:
        return {"connector": self.connector, "run_id": self.run_id, "batches": self.batches,
                "failures": len(self.failures), "reconciled_deletions":
                self.reconciled_deletions, "seconds": round(self.seconds, 3),
                **self.stats.as_dict()}


def run_sync(connector: Connector, *, ingestor: Ingestor, engine: Engine,
             reconcile: bool = True) -> SyncResult:
    """Pull ``connector`` from its checkpoint and ingest everything it yields."""
    started = time.perf_counter()
    result = SyncResult(connector=connector.name)
    outcome = "failed"
    with span("sync.run", **{"contextd.connector": connector.name,
                             "contextd.connector_kind": connector.kind}) as run_span:
        try:
            cursor = load_cursor(engine, name=connector.name)
            for batch in connector.pull(cursor):
                with span("sync.batch", **{"contextd.records": len(batch.records)}):
                    _ingest_batch(batch, connector, ingestor, engine, result)
            if reconcile:
                gone = live_source_ids(engine, source=connector.name) - set(connector.list_ids())
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
                  engine: Engine, result: SyncResult) -> None:
    result.batches += 1
    if batch.records or batch.tombstones:
        stats = ingestor.ingest(batch.records, batch.tombstones)
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
