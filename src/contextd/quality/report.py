"""Everything the analysts' dashboard shows, assembled from the quality functions the API
serves, so the page and ``/v1/quality`` can never disagree. A window ending in the past
shows only what existed at its end: runs, golden sets and connectors created later are
left out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from contextd.core.types import as_utc, iso
from contextd.quality import sources
from contextd.quality.evaluation import list_runs, run_json
from contextd.quality.golden import golden_set_json, list_golden_sets
from contextd.quality.metrics import quality_snapshot, quality_timeseries
from contextd.state.tables import BundleServed

HEADLINE = ("ndcg@10", "mrr", "recall@bundle")


def request_row(bundle: BundleServed) -> dict[str, Any]:
    """A served bundle as the dashboard lists it (query text only if it was kept)."""
    return {"bundle_id": bundle.bundle_id, "created_at": iso(bundle.created_at),
            "agent": bundle.agent, "user_id": bundle.user_id, "query": bundle.query,
            "item_count": len(bundle.items), "token_count": bundle.token_count,
            "token_budget": bundle.token_budget, "candidates": bundle.candidates,
            "latency_ms": bundle.latency_ms, "stages_ms": bundle.stages_ms}


def fallen(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics that fell past the threshold in a run, worst first: what the
    regression row names (``{"metric", "baseline", "current", "delta"}``)."""
    compared = (run.get("comparison") or {}).get("metrics") or {}
    rows = [{"metric": name, **values} for name, values in compared.items()
            if values.get("regressed")]
    return sorted(rows, key=lambda row: row["delta"])


def golden_headlines(sets: list[dict[str, Any]], runs: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Per golden set: its latest run and its baseline run, with the headline metrics."""
    by_id = {run["id"]: run for run in runs}
    out = []
    for golden in sets:
        own = [run for run in runs if run["golden_set_id"] == golden["id"]]
        latest = own[0] if own else None
        baseline = by_id.get(golden["baseline_run_id"] or "")
        out.append({"set": golden, "latest": latest, "baseline": baseline,
                    "fallen": fallen(latest) if latest else [],
                    "figures": [{"metric": m,
                                 "latest": (latest or {}).get("metrics", {}).get(m),
                                 "baseline": (baseline or {}).get("metrics", {}).get(m)}
                                for m in HEADLINE]})
    return out


def dashboard_report(engine: Engine, *, now: datetime, hours: int,
                     lag_objective_seconds: float) -> dict[str, Any]:
    start = now - timedelta(hours=hours)
    sets = [golden_set_json(s) for s in list_golden_sets(engine)
            if as_utc(s.created_at) <= now]
    runs = [run_json(r) for r in list_runs(engine, limit=200, before=now)]
    for run in runs:
        run["fallen"] = fallen(run)
    return {
        "snapshot": quality_snapshot(engine, start=start, end=now,
                                     lag_objective_seconds=lag_objective_seconds),
        "hourly": quality_timeseries(engine, start=start, end=now, bucket="hour")
        if hours <= 72 else [],
        "daily": quality_timeseries(engine, start=min(start, now - timedelta(days=7)),
                                    end=now, bucket="day"),
        "runs": runs[:20],
        "golden_sets": sets,
        "golden": golden_headlines(sets, runs),
        "slowest": [request_row(b) for b in sources.slowest_bundles(engine, start, now)],
        "emptiest": [request_row(b) for b in sources.emptiest_bundles(engine, start, now)],
    }
