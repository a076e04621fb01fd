"""The queue of requested connector runs (``sync_requests``) and the schedule marks.

Any process queues a run (an API replica on ``POST .../sync``, a worker when a schedule
fires); worker threads claim the oldest queued request with a compare-and-set update, so
two workers never claim the same one, on SQLite or PostgreSQL alike. A connector has at
most one queued request (a second request joins it) and at most one claimed at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from contextd.core.types import as_utc, utcnow
from contextd.state.db import session_scope
from contextd.state.tables import ScheduleMark, SyncRequestRow

_CANDIDATES = 50


@dataclass(frozen=True)
class QueueState:
    """Where a connector stands in the queue: ``running`` or ``queued``; ``position`` is
    the 1-based place of its queued request in the whole queue (also while one runs)."""

    state: str
    position: int | None = None


def enqueue(engine: Engine, *, connector_id: str, trigger: str) -> SyncRequestRow:
    """Queue a run; when one is already queued for the connector, that one is returned."""
    with Session(engine, expire_on_commit=False) as session:
        queued = session.exec(select(SyncRequestRow).where(
            SyncRequestRow.connector_id == connector_id,
            SyncRequestRow.status == "queued")).first()
        if queued is not None:
            return queued
        row = SyncRequestRow(id=uuid.uuid4().hex, connector_id=connector_id, trigger=trigger)
        session.add(row)
        session.commit()
        return row


def claim_next(engine: Engine, *, worker: str,
               skip: Collection[str] = ()) -> SyncRequestRow | None:
    """Claim the oldest queued request whose connector is not running (nor in ``skip``)."""
    with Session(engine, expire_on_commit=False) as session:
        running = set(session.exec(select(SyncRequestRow.connector_id).where(
            SyncRequestRow.status == "running")).all())
        candidates = session.exec(select(SyncRequestRow).where(
            SyncRequestRow.status == "queued").order_by(
            col(SyncRequestRow.requested_at)).limit(_CANDIDATES)).all()
    busy = running | set(skip)
    for candidate in candidates:
        if candidate.connector_id in busy:
            continue
        now = utcnow()
        with session_scope(engine) as session:
            taken = session.execute(update(SyncRequestRow).where(
                col(SyncRequestRow.id) == candidate.id,
                col(SyncRequestRow.status) == "queued").values(
                status="running", claimed_by=worker, claimed_at=now))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            candidate.status, candidate.claimed_by, candidate.claimed_at = "running", worker, now
            return candidate
        busy.add(candidate.connector_id)
    return None


def requeue(engine: Engine, request_id: str) -> None:
    """Give a claimed request back; it keeps its place (``requested_at``)."""
    with session_scope(engine) as session:
        session.execute(update(SyncRequestRow).where(col(SyncRequestRow.id) == request_id)
                        .values(status="queued", claimed_by=None, claimed_at=None))


def finish(engine: Engine, request_id: str, *, run_id: str | None, outcome: str) -> None:
    with session_scope(engine) as session:
        session.execute(update(SyncRequestRow).where(col(SyncRequestRow.id) == request_id)
                        .values(status="done", run_id=run_id, outcome=outcome,
                                finished_at=utcnow()))


def get_request(engine: Engine, request_id: str) -> SyncRequestRow | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(SyncRequestRow, request_id)


def claimed_before(engine: Engine, before: datetime) -> list[SyncRequestRow]:
    """Requests claimed before ``before`` and still running (their worker may be dead)."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(SyncRequestRow).where(
            SyncRequestRow.status == "running", col(SyncRequestRow.claimed_at) < before)))


def queue_states(engine: Engine) -> dict[str, QueueState]:
    """Every connector with a queued or running request, in one read."""
    with Session(engine) as session:
        rows = session.exec(select(SyncRequestRow.connector_id, SyncRequestRow.status).where(
            col(SyncRequestRow.status).in_(["queued", "running"])).order_by(
            col(SyncRequestRow.requested_at))).all()
    running = {connector_id for connector_id, status in rows if status == "running"}
    states = {connector_id: QueueState("running") for connector_id in running}
    position = 0
    for connector_id, status in rows:
        if status == "queued":
            position += 1
            state = "running" if connector_id in running else "queued"
            states[connector_id] = QueueState(state, position)
    return states


def purge_done(engine: Engine, *, before: datetime) -> int:
    with session_scope(engine) as session:
        result = session.execute(delete(SyncRequestRow).where(
            col(SyncRequestRow.status) == "done", col(SyncRequestRow.finished_at) < before))
        return int(result.rowcount)  # type: ignore[attr-defined]


def schedule_marks(engine: Engine) -> dict[str, datetime]:
    with Session(engine) as session:
        return {m.connector_id: as_utc(m.due_at) for m in session.exec(select(ScheduleMark))}


def advance_mark(engine: Engine, connector_id: str, *, due_at: datetime,
                 previous: datetime | None) -> bool:
    """Move the connector's mark forward to ``due_at`` (``previous``: the mark read, None
    when there was none); False when another worker moved it first (that one queues)."""
    with session_scope(engine) as session:
        if previous is None:
            session.add(ScheduleMark(connector_id=connector_id, due_at=due_at))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return False
            return True
        moved = session.execute(update(ScheduleMark).where(
            col(ScheduleMark.connector_id) == connector_id,
            col(ScheduleMark.due_at) < due_at).values(due_at=due_at))
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def forget_connector(engine: Engine, connector_id: str) -> None:
    """Drop a deleted connector's requests and mark."""
    with session_scope(engine) as session:
        session.execute(delete(SyncRequestRow).where(
            col(SyncRequestRow.connector_id) == connector_id))
        session.execute(delete(ScheduleMark).where(
            col(ScheduleMark.connector_id) == connector_id))
