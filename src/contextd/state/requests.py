"""Outcomes of ``POST /v1/context`` calls (status and latency), failures included."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from contextd.state import deferred
from contextd.state.tables import ContextRequestRow


def record_context_request(engine: Engine, *, status: int, latency_ms: float,
                           request_id: str) -> None:
    """Queue the call's outcome row for the engine's deferred writer (``state.deferred``):
    the request never waits for this write."""
    deferred.add(engine, ContextRequestRow(status=status, latency_ms=latency_ms,
                                           request_id=request_id[:64]))
