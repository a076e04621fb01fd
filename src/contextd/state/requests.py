"""Outcomes of ``POST /v1/context`` calls (status and latency), failures included."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from contextd.state.db import session_scope
from contextd.state.tables import ContextRequestRow


def record_context_request(engine: Engine, *, status: int, latency_ms: float,
                           request_id: str) -> None:
    with session_scope(engine) as session:
        session.add(ContextRequestRow(status=status, latency_ms=latency_ms,
                                      request_id=request_id[:64]))
