"""Reads the rows the quality metrics are computed from, one small function per source.

Other issues own some of these tables (sync runs, feedback); each read is one function
here so it can be repointed without touching the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from contextd.core.types import as_utc, utcnow
from contextd.state import deferred
from contextd.state.tables import (
    BundleServed,
    ConnectorCursor,
    ConnectorRow,
    ContextRequestRow,
    DocumentRow,
    EvalRunRow,
    FeedbackRow,
    QuarantineRow,
    SyncRunRow,
)

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ServedBundle:
    """The columns of a ``bundles_served`` row the metrics read (no ORM objects: a month
    of bundles loads several times faster as plain tuples)."""

    bundle_id: str
    created_at: datetime
    kinds_requested: Sequence[str]
    items: Sequence[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    created_at: datetime
    status: int
    latency_ms: float


@dataclass(frozen=True, slots=True)
class RunSummary:
    """An eval run without its per-query detail."""

    id: str
    created_at: datetime
    golden_set_id: str | None
    dataset: str
    config: dict[str, Any]
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class DocumentState:
    """What the documents table says about a document now."""

    version: int
    deleted: bool
    changed_at: datetime  # ingested_at: when the current version (or deletion) was written


def bundles_between(engine: Engine, start: datetime, end: datetime) -> list[ServedBundle]:
    deferred.flush(engine)
    statement = select(BundleServed.bundle_id, BundleServed.created_at,
                       BundleServed.kinds_requested, BundleServed.items).where(
        BundleServed.created_at >= start, BundleServed.created_at < end)
    with Session(engine) as session:
        return [ServedBundle(b, as_utc(at), kinds, items)
                for b, at, kinds, items in session.exec(statement)]


def requests_between(engine: Engine, start: datetime, end: datetime) -> list[RequestOutcome]:
    deferred.flush(engine)
    statement = select(ContextRequestRow.created_at, ContextRequestRow.status,
                       ContextRequestRow.latency_ms).where(
        ContextRequestRow.created_at >= start, ContextRequestRow.created_at < end)
    with Session(engine) as session:
        return [RequestOutcome(as_utc(at), status, latency)
                for at, status, latency in session.exec(statement)]


def feedback_between(engine: Engine, start: datetime, end: datetime) -> list[FeedbackRow]:
    """Feedback given (whenever) on the bundles served in ``[start, end)``."""
    deferred.flush(engine)
    served = select(BundleServed.bundle_id).where(
        BundleServed.created_at >= start, BundleServed.created_at < end)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(FeedbackRow).where(
            col(FeedbackRow.bundle_id).in_(served.scalar_subquery()))))


def document_states(engine: Engine,
                    keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DocumentState]:
    """Current state of each ``(source, source_id)`` that exists in the documents table."""
    by_source: dict[str, list[str]] = {}
    for source, source_id in set(keys):
        by_source.setdefault(source, []).append(source_id)
    found: dict[tuple[str, str], DocumentState] = {}
    with Session(engine) as session:
        for source, ids in by_source.items():
            for start in range(0, len(ids), _IN_CHUNK):
                rows = session.exec(select(DocumentRow.source_id, DocumentRow.version,
                                           DocumentRow.deleted, DocumentRow.ingested_at).where(
                    DocumentRow.source == source,
                    col(DocumentRow.source_id).in_(ids[start:start + _IN_CHUNK])))
                for source_id, version, deleted, changed in rows:
                    found[(source, source_id)] = DocumentState(version, deleted, as_utc(changed))
    return found


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    """How a source is doing: when it last synced successfully and how its last run ended.

    ``registered`` is False for sources loaded without a configured connector (``contextd
    ingest``), whose last success is their last checkpoint or document write.
    ``quarantined`` counts records that failed to map and wait to be retried.
    """

    name: str
    last_success_at: datetime | None
    last_status: str | None
    last_error_code: str | None
    enabled: bool
    registered: bool
    connector_id: str | None = None
    quarantined: int = 0


SUCCESS_STATUSES = ("success", "partial")


def connector_health(engine: Engine, at: datetime | None = None) -> list[ConnectorHealth]:
    """Every configured connector (from its sync runs), then every other source, as they
    stood at ``at`` (default: now): connectors created, runs started and documents
    written after it are left out, so a past window shows only what existed then."""
    at = at or utcnow()
    found: dict[str, ConnectorHealth] = {}
    with Session(engine) as session:
        connectors = list(session.exec(select(ConnectorRow).where(
            col(ConnectorRow.created_at) <= at)))
        succeeded = dict(session.exec(
            select(SyncRunRow.connector_id, func.max(SyncRunRow.finished_at))
            .where(col(SyncRunRow.status).in_(SUCCESS_STATUSES),
                   col(SyncRunRow.finished_at) <= at)
            .group_by(SyncRunRow.connector_id)).all())
        held = dict(session.exec(
            select(QuarantineRow.connector_id, func.count())
            .where(col(QuarantineRow.first_seen_at) <= at)
            .group_by(QuarantineRow.connector_id)).all())
        for row in connectors:
            latest = session.exec(select(SyncRunRow.status, SyncRunRow.error_code)
                                  .where(SyncRunRow.connector_id == row.id,
                                         col(SyncRunRow.started_at) <= at)
                                  .order_by(col(SyncRunRow.started_at).desc())
                                  .limit(1)).first()
            success_at = succeeded.get(row.id)
            found[row.name] = ConnectorHealth(
                name=row.name, last_success_at=as_utc(success_at) if success_at else None,
                last_status=latest[0] if latest else None,
                last_error_code=latest[1] if latest else None,
                enabled=row.enabled, registered=True, connector_id=row.id,
                quarantined=int(held.get(row.id, 0)))
        loaded: dict[str, datetime] = {}
        for name, when in session.exec(select(ConnectorCursor.name, ConnectorCursor.updated_at)
                                       .where(col(ConnectorCursor.updated_at) <= at)):
            loaded[name] = as_utc(when)
        for source, when in session.exec(select(DocumentRow.source,
                                                func.max(DocumentRow.ingested_at))
                                         .where(col(DocumentRow.ingested_at) <= at)
                                         .group_by(DocumentRow.source)):
            if when is not None and (source not in loaded or as_utc(when) > loaded[source]):
                loaded[source] = as_utc(when)
    for name, when in loaded.items():
        if name not in found:
            found[name] = ConnectorHealth(name=name, last_success_at=when, last_status=None,
                                          last_error_code=None, enabled=True,
                                          registered=False)
    return [found[name] for name in sorted(found)]


def eval_runs_between(engine: Engine, start: datetime, end: datetime) -> list[RunSummary]:
    lazy_detail = defer(EvalRunRow.per_query)  # type: ignore[arg-type]
    statement = select(EvalRunRow).options(lazy_detail).where(
        EvalRunRow.created_at >= start, EvalRunRow.created_at < end)
    with Session(engine) as session:
        return [RunSummary(r.id, as_utc(r.created_at), r.golden_set_id, r.dataset, r.config,
                           r.metrics) for r in session.exec(statement)]


def slowest_bundles(engine: Engine, start: datetime, end: datetime,
                    limit: int = 10) -> list[BundleServed]:
    deferred.flush(engine)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(BundleServed).where(
            BundleServed.created_at >= start, BundleServed.created_at < end)
            .order_by(col(BundleServed.latency_ms).desc()).limit(limit)))


def emptiest_bundles(engine: Engine, start: datetime, end: datetime,
                     limit: int = 10) -> list[BundleServed]:
    """Bundles with the fewest tokens served (empty ones first), newest first among ties."""
    deferred.flush(engine)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(BundleServed).where(
            BundleServed.created_at >= start, BundleServed.created_at < end)
            .order_by(col(BundleServed.token_count), col(BundleServed.created_at).desc())
            .limit(limit)))
