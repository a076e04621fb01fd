"""The append-only audit log: every context request and every admin action.

:func:`record` is the one writer (insert only; there is no update or delete path), so a
router, the connector API or the CLI call it the same way. :func:`query` is what
``GET /v1/audit`` serves: filters and keyset paging on the id, newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.telemetry import span
from contextd.core.types import as_utc
from contextd.state import deferred
from contextd.state.db import session_scope
from contextd.state.tables import AuditEvent

log = logging.getLogger(__name__)

MAX_PAGE = 500


def record(engine: Engine, *, action: str, actor_key_id: str = "", actor: str = "",
           outcome: str = "ok", user_id: str | None = None, target: str | None = None,
           query_hash: str | None = None, query: str | None = None,
           item_ids: Sequence[str] = (), latency_ms: float | None = None,
           redactions: int = 0, details: dict[str, Any] | None = None) -> int:
    """Append one entry; returns its id. Never pass secrets in ``details``.

    ``action`` is a dotted name: ``context.request``, ``key.create``, ``key.rotate``,
    ``key.revoke``, ``key.policy``, ``principal.set``, ``principal.import``,
    ``connector.create`` / ``connector.update`` / ``connector.delete`` / ``connector.sync``.
    """
    with span("audit.record", **{"contextd.audit_action": action}), \
            session_scope(engine) as session:
        row = AuditEvent(action=action, outcome=outcome, actor_key_id=actor_key_id,
                         actor=actor, user_id=user_id, target=target, query_hash=query_hash,
                         query=query, item_ids=list(item_ids), latency_ms=latency_ms,
                         redactions=redactions, details=details or {})
        session.add(row)
        session.flush()
        event_id = int(row.id or 0)
    log.info("audit", extra={"event": "audit", "action": action, "outcome": outcome,
                             "audit_id": event_id, "actor_key_id": actor_key_id})
    return event_id


def record_later(engine: Engine, *, action: str, actor_key_id: str = "", actor: str = "",
                 outcome: str = "ok", user_id: str | None = None, target: str | None = None,
                 query_hash: str | None = None, query: str | None = None,
                 item_ids: Sequence[str] = (), latency_ms: float | None = None,
                 redactions: int = 0, details: dict[str, Any] | None = None) -> None:
    """:func:`record` for the request path: the entry (stamped now) is queued for the
    engine's deferred writer instead of written on the caller's thread, and is in every
    :func:`query` of this process made after this call."""
    deferred.add(engine, AuditEvent(
        action=action, outcome=outcome, actor_key_id=actor_key_id, actor=actor,
        user_id=user_id, target=target, query_hash=query_hash, query=query,
        item_ids=list(item_ids), latency_ms=latency_ms, redactions=redactions,
        details=details or {}))
    log.info("audit", extra={"event": "audit", "action": action, "outcome": outcome,
                             "actor_key_id": actor_key_id})


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What ``GET /v1/audit`` may filter on; None means "any"."""

    actor: str | None = None  # key id or key name
    action: str | None = None  # exact, or a prefix ending in "." (e.g. "key.")
    user_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(engine: Engine, flt: AuditFilter, *, limit: int = 100,
          before_id: int | None = None) -> tuple[list[AuditEvent], int | None]:
    """Entries matching ``flt``, newest first, and the cursor of the next page (or None)."""
    deferred.flush(engine)
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(AuditEvent)
    if flt.actor:
        stmt = stmt.where((col(AuditEvent.actor_key_id) == flt.actor)
                          | (col(AuditEvent.actor) == flt.actor))
    if flt.action:
        if flt.action.endswith("."):
            stmt = stmt.where(col(AuditEvent.action).startswith(flt.action, autoescape=True))
        else:
            stmt = stmt.where(col(AuditEvent.action) == flt.action)
    if flt.user_id:
        stmt = stmt.where(col(AuditEvent.user_id) == flt.user_id)
    if flt.outcome:
        stmt = stmt.where(col(AuditEvent.outcome) == flt.outcome)
    if flt.since:
        stmt = stmt.where(col(AuditEvent.created_at) >= as_utc(flt.since))
    if flt.until:
        stmt = stmt.where(col(AuditEvent.created_at) < as_utc(flt.until))
    if before_id is not None:
        stmt = stmt.where(col(AuditEvent.id) < before_id)
    stmt = stmt.order_by(col(AuditEvent.id).desc()).limit(limit + 1)
    with Session(engine) as session:
        rows = list(session.exec(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:  # SQLite hands back naive datetimes; every one stored is UTC
        row.created_at = as_utc(row.created_at)
    return rows, (rows[-1].id if more and rows else None)
