"""Cost accounting: one row per context request and per sync run, summed per day."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.types import as_utc, utcnow
from contextd.state import deferred
from contextd.state.db import session_scope
from contextd.state.tables import CostEvent


def record_cost(engine: Engine, *, kind: str, ref: str, embed_tokens: int,
                embed_cpu_seconds: float, served_tokens: int = 0, agent: str | None = None,
                connector: str | None = None, at: datetime | None = None) -> None:
    """Append one cost row (never updated afterwards)."""
    with session_scope(engine) as session:
        session.add(cost_row(kind=kind, ref=ref, embed_tokens=embed_tokens,
                             embed_cpu_seconds=embed_cpu_seconds, served_tokens=served_tokens,
                             agent=agent, connector=connector, at=at))


def cost_row(*, kind: str, ref: str, embed_tokens: int, embed_cpu_seconds: float,
             served_tokens: int = 0, agent: str | None = None, connector: str | None = None,
             at: datetime | None = None) -> CostEvent:
    """One cost row, stamped ``at`` (default now); the request path queues it for the
    deferred writer (``state.deferred``)."""
    at = as_utc(at or utcnow())
    return CostEvent(created_at=at, day=at.date().isoformat(), kind=kind, ref=ref,
                     agent=agent, connector=connector, embed_tokens=embed_tokens,
                     embed_cpu_seconds=embed_cpu_seconds, served_tokens=served_tokens)


def daily_costs(engine: Engine, *, days: int) -> list[dict[str, Any]]:
    """Totals per day, kind and subject (agent or connector) over the last ``days`` days."""
    deferred.flush(engine)
    since = (utcnow() - timedelta(days=days - 1)).date().isoformat()
    subject = func.coalesce(CostEvent.agent, CostEvent.connector, "")
    query = (select(CostEvent.day, CostEvent.kind, subject, func.count(),  # type: ignore[call-overload]
                    func.sum(CostEvent.embed_tokens), func.sum(CostEvent.embed_cpu_seconds),
                    func.sum(CostEvent.served_tokens))
             .where(CostEvent.day >= since)
             .group_by(CostEvent.day, CostEvent.kind, subject)
             .order_by(col(CostEvent.day).desc(), CostEvent.kind, subject))
    with Session(engine) as session:
        rows = session.exec(query).all()
    return [{"day": day, "kind": kind, "subject": subj, "events": int(n),
             "embed_tokens": int(tokens or 0), "embed_cpu_seconds": round(float(cpu or 0), 6),
             "served_tokens": int(served or 0)}
            for day, kind, subj, n, tokens, cpu, served in rows]


def cost_events(engine: Engine, *, day: str, limit: int, offset: int) -> list[CostEvent]:
    """The rows of one day, oldest first, paged."""
    deferred.flush(engine)
    with Session(engine) as session:
        return list(session.exec(select(CostEvent).where(CostEvent.day == day)
                                 .order_by(col(CostEvent.id)).offset(offset).limit(limit)))
