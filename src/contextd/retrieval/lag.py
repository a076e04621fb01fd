"""Which sources a bundle drew on are past their freshness objective.

A source is late when its last successful sync is older than its objective (per source
name, else per kind, else the default). The sync history lives in SQL; it is read at most
every ``ttl`` seconds, not on every request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any


class SourceLag:
    """Freshness-objective warnings from ``last_success`` (source -> last successful sync,
    None if never)."""

    def __init__(self, last_success: Callable[[], Mapping[str, datetime | None]], *,
                 objectives: Mapping[str, float], default_seconds: float,
                 ttl: float = 30.0) -> None:
        self._read = last_success
        self.objectives = dict(objectives)
        self.default_seconds = default_seconds
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: Mapping[str, datetime | None] = {}
        self._read_at = -float("inf")

    def _last(self) -> Mapping[str, datetime | None]:
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl:
                try:
                    self._cached = dict(self._read())
                except Exception:  # a warning source must never fail a bundle
                    self._cached = {}
                self._read_at = time.monotonic()
            return self._cached

    def objective(self, source: str, kind: str) -> float:
        return self.objectives.get(source, self.objectives.get(kind, self.default_seconds))

    def late(self, kinds_by_source: Mapping[str, str], now: datetime) -> list[dict[str, Any]]:
        """One warning per source of ``kinds_by_source`` whose last success is too old."""
        last = self._last()
        out = []
        for source in sorted(kinds_by_source):
            if source not in last:
                continue  # not a synced source (tests, eval corpora)
            objective = self.objective(source, kinds_by_source[source])
            at = last[source]
            lag = None if at is None else (now - at).total_seconds()
            if lag is None or lag > objective:
                out.append({
                    "code": "source_stale", "source": source,
                    "last_success_at": at.isoformat() if at else None,
                    "objective_seconds": objective,
                    "message": (f"source {source!r} never synced successfully" if lag is None
                                else f"source {source!r} last synced {lag / 3600:.1f} h ago, "
                                     f"past its freshness objective of "
                                     f"{objective / 3600:.1f} h")})
        return out
