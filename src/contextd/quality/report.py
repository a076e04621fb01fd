"""Everything the analysts' dashboard shows, assembled from the quality functions the API
serves, so the page and ``/v1/quality`` can never disagree."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from contextd.core.types import iso
from contextd.quality import sources
from contextd.quality.evaluation import list_runs, run_json
from contextd.quality.golden import golden_set_json, list_golden_sets
from contextd.quality.metrics import quality_snapshot, quality_timeseries
from contextd.state.tables import BundleServed


def request_row(bundle: BundleServed) -> dict[str, Any]:
    """A served bundle as the dashboard lists it (query text only if it was kept)."""
    return {"bundle_id": bundle.bundle_id, "created_at": iso(bundle.created_at),
            "agent": bundle.agent, "user_id": bundle.user_id, "query": bundle.query,
            "item_count": len(bundle.items), "token_count": bundle.token_count,
            "token_budget": bundle.token_budget, "candidates": bundle.candidates,
            "latency_ms": bundle.latency_ms, "stages_ms": bundle.stages_ms}


def dashboard_report(engine: Engine, *, now: datetime, hours: int,
                     lag_objective_seconds: float) -> dict[str, Any]:
    start = now - timedelta(hours=hours)
    sets = list_golden_sets(engine)
    return {
        "snapshot": quality_snapshot(engine, start=start, end=now,
                                     lag_objective_seconds=lag_objective_seconds),
        "hourly": quality_timeseries(engine, start=now - timedelta(hours=48), end=now,
                                     bucket="hour"),
        "daily": quality_timeseries(engine, start=now - timedelta(days=30), end=now,
                                    bucket="day"),
        "runs": [run_json(r) for r in list_runs(engine, limit=20)],
        "golden_sets": [golden_set_json(s) for s in sets],
        "slowest": [request_row(b) for b in sources.slowest_bundles(engine, start, now)],
        "emptiest": [request_row(b) for b in sources.emptiest_bundles(engine, start, now)],
    }
