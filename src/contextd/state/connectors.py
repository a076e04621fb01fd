"""Repository of configured connectors, their sync runs and their quarantined records."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from contextd.core.errors import Conflict, NotFound
from contextd.core.types import RecordFailure, as_utc, utcnow
from contextd.state.db import session_scope
from contextd.state.tables import (
    ConnectorCursor,
    ConnectorRow,
    DocumentRow,
    QuarantineRow,
    SyncRunRow,
)

_PAYLOAD_CHARS = 4000  # a quarantined item keeps this much of its raw form for diagnosis
_IN_CHUNK = 500


def new_id() -> str:
    return uuid.uuid4().hex


# -- connectors -------------------------------------------------------------------------


def create_connector(engine: Engine, row: ConnectorRow) -> ConnectorRow:
    """Insert ``row``; Conflict when the name is taken."""
    try:
        with session_scope(engine) as session:
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a connector named {row.name!r} already exists",
                       details=[{"field": "name", "message": "already exists"}]) from None
    return row


def list_connectors(engine: Engine) -> list[ConnectorRow]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(ConnectorRow).order_by(col(ConnectorRow.name))))


def get_connector(engine: Engine, connector_id: str) -> ConnectorRow:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(ConnectorRow, connector_id)
    if row is None:
        raise NotFound(f"connector {connector_id!r} not found")
    return row


def find_connector(engine: Engine, name: str) -> ConnectorRow:
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(select(ConnectorRow).where(ConnectorRow.name == name)).first()
    if row is None:
        raise NotFound(f"connector named {name!r} not found")
    return row


def save_connector(engine: Engine, row: ConnectorRow) -> ConnectorRow:
    row.updated_at = utcnow()
    with session_scope(engine) as session:
        session.merge(row)
    return row


def delete_connector_state(engine: Engine, row: ConnectorRow) -> int:
    """Remove the connector and everything SQL holds for it in one transaction.

    Returns how many document rows were removed. The vector store is purged by the caller
    before this, so a failure in between leaves the row in place for a retried delete.
    """
    with session_scope(engine) as session:
        documents = session.execute(delete(DocumentRow).where(
            col(DocumentRow.source) == row.name))
        session.execute(delete(ConnectorCursor).where(col(ConnectorCursor.name) == row.name))
        session.execute(delete(QuarantineRow).where(col(QuarantineRow.connector_id) == row.id))
        session.execute(delete(SyncRunRow).where(col(SyncRunRow.connector_id) == row.id))
        session.execute(delete(ConnectorRow).where(col(ConnectorRow.id) == row.id))
        return int(documents.rowcount)  # type: ignore[attr-defined]


# -- runs -------------------------------------------------------------------------------


def start_run(engine: Engine, *, connector_id: str, trigger: str) -> SyncRunRow:
    run = SyncRunRow(id=new_id(), connector_id=connector_id, trigger=trigger)
    with session_scope(engine) as session:
        session.add(run)
    return run


def save_run(engine: Engine, run: SyncRunRow) -> None:
    run.heartbeat_at = utcnow()
    with session_scope(engine) as session:
        session.merge(run)


def mark_interrupted(engine: Engine, *, connector_id: str, exclude: str) -> int:
    """Runs left ``running`` by a process that died: called by the lease holder only."""
    with session_scope(engine) as session:
        stale = session.exec(select(SyncRunRow).where(
            SyncRunRow.connector_id == connector_id, SyncRunRow.status == "running",
            SyncRunRow.id != exclude)).all()
        for run in stale:
            run.status = "interrupted"
            run.finished_at = run.heartbeat_at
            run.error = "the process ended mid-run; the next run resumed from the checkpoint"
            session.add(run)
        return len(stale)


def get_run(engine: Engine, run_id: str) -> SyncRunRow:
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(SyncRunRow, run_id)
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    return run


def list_runs(engine: Engine, connector_id: str, *, limit: int = 50) -> list[SyncRunRow]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(SyncRunRow)
                                 .where(SyncRunRow.connector_id == connector_id)
                                 .order_by(col(SyncRunRow.started_at).desc())
                                 .limit(limit)))


def last_run(engine: Engine, connector_id: str, *,
             statuses: Sequence[str] | None = None) -> SyncRunRow | None:
    with Session(engine, expire_on_commit=False) as session:
        query = select(SyncRunRow).where(SyncRunRow.connector_id == connector_id)
        if statuses is not None:
            query = query.where(col(SyncRunRow.status).in_(list(statuses)))
        return session.exec(query.order_by(col(SyncRunRow.started_at).desc()).limit(1)).first()


# -- quarantine -------------------------------------------------------------------------


def quarantine(engine: Engine, *, connector_id: str, failures: Iterable[RecordFailure]) -> int:
    """Store or refresh each failure (attempts + 1 when seen again)."""
    now = utcnow()
    count = 0
    with session_scope(engine) as session:
        for failure in failures:
            row = session.get(QuarantineRow, (connector_id, failure.source_id))
            if row is None:
                row = QuarantineRow(connector_id=connector_id, source_id=failure.source_id,
                                    error=failure.error, payload=failure.raw[:_PAYLOAD_CHARS],
                                    first_seen_at=now, last_seen_at=now)
            else:
                row.error = failure.error
                row.payload = failure.raw[:_PAYLOAD_CHARS] or row.payload
                row.attempts += 1
                row.last_seen_at = now
            session.add(row)
            count += 1
    return count


def release_quarantine(engine: Engine, *, connector_id: str, source_ids: Iterable[str]) -> int:
    """Drop entries whose records were since ingested or deleted."""
    ids = sorted(set(source_ids))
    removed = 0
    with session_scope(engine) as session:
        for start in range(0, len(ids), _IN_CHUNK):
            result = session.execute(delete(QuarantineRow).where(
                col(QuarantineRow.connector_id) == connector_id,
                col(QuarantineRow.source_id).in_(ids[start:start + _IN_CHUNK])))
            removed += int(result.rowcount)  # type: ignore[attr-defined]
    return removed


def list_quarantine(engine: Engine, connector_id: str, *,
                    limit: int = 500) -> list[QuarantineRow]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(QuarantineRow)
                                 .where(QuarantineRow.connector_id == connector_id)
                                 .order_by(col(QuarantineRow.source_id)).limit(limit)))


def lag_seconds(last_success: datetime | None) -> float | None:
    """Seconds since the last successful run finished (None before the first)."""
    if last_success is None:
        return None
    return max(0.0, (utcnow() - as_utc(last_success)).total_seconds())


def summary_counts(engine: Engine, connector_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        quarantined = len(session.exec(select(QuarantineRow.source_id).where(
            QuarantineRow.connector_id == connector_id)).all())
    return {"quarantined": quarantined}
