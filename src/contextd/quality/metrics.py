"""The five context quality metrics over a time window, each with its definition.

Pure functions over rows (bundles served, request outcomes, feedback, document states,
eval runs) do the arithmetic; :func:`quality_snapshot` and :func:`quality_timeseries` read
the rows and assemble the served form. Every figure carries ``value``, ``n`` (how many
observations it rests on; ``value`` is None when n is 0) and its definition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from sqlalchemy.engine import Engine

from contextd.core.telemetry import span
from contextd.core.types import as_utc, iso
from contextd.quality import sources
from contextd.quality.definitions import DEFINITIONS
from contextd.quality.sources import (
    ConnectorHealth,
    DocumentState,
    RequestOutcome,
    RunSummary,
    ServedBundle,
)
from contextd.retrieval.service import parse_ts
from contextd.state.tables import FeedbackRow

DAY_SECONDS = 86400.0
Bucket = Literal["hour", "day"]
BUCKET_SIZE: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def figure(name: str, value: float | None, n: int, **extra: Any) -> dict[str, Any]:
    return {"value": value, "n": n, "definition": DEFINITIONS[name], **extra}


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def default_config(config: dict[str, Any]) -> bool:
    """The configuration agents are served with: hybrid search, freshness on."""
    return config.get("mode", "hybrid") == "hybrid" and bool(config.get("freshness", True))


def latest_default_run(runs: Sequence[RunSummary], metric: str) -> RunSummary | None:
    chosen = [r for r in runs if default_config(r.config) and metric in r.metrics]
    return max(chosen, key=lambda r: as_utc(r.created_at)) if chosen else None


def _run_figure(name: str, runs: Sequence[RunSummary], metric: str) -> dict[str, Any]:
    run = latest_default_run(runs, metric)
    if run is None:
        return figure(name, None, 0, run_id=None, golden_set_id=None)
    return figure(name, run.metrics[metric], int(run.metrics.get("queries", 0)),
                  run_id=run.id, golden_set_id=run.golden_set_id, dataset=run.dataset)


def completeness(bundles: Sequence[ServedBundle], runs: Sequence[RunSummary]) -> dict[str, Any]:
    asked = [b for b in bundles if b.kinds_requested]
    covered = sum(1 for b in asked
                  if set(b.kinds_requested) <= {str(i.get("kind")) for i in b.items})
    return {
        "golden_recall_at_bundle": _run_figure("completeness.golden_recall_at_bundle", runs,
                                               "recall@bundle"),
        "requested_kinds_covered": figure("completeness.requested_kinds_covered",
                                          share(covered, len(asked)), len(asked)),
    }


def item_was_current(item: dict[str, Any], served_at: datetime,
                     state: DocumentState | None) -> str:
    """``current``, ``missing``, ``deleted`` or ``superseded`` (see the definition)."""
    if state is None:
        return "missing"
    if state.deleted:
        return "deleted"
    if item.get("superseded"):  # served as an older version of its entity (it said so)
        return "superseded"
    served_version = int(item.get("doc_version") or 0)
    if state.version == served_version:
        return "current"
    if state.version == served_version + 1 and state.changed_at > as_utc(served_at):
        return "current"
    return "superseded"


def accuracy(bundles: Sequence[ServedBundle],
             states: dict[tuple[str, str], DocumentState]) -> dict[str, Any]:
    outcomes: dict[str, int] = defaultdict(int)
    for bundle in bundles:
        for item in bundle.items:
            key = (str(item.get("source")), str(item.get("source_id")))
            outcomes[item_was_current(item, bundle.created_at, states.get(key))] += 1
    total = sum(outcomes.values())
    return {"current_share": figure(
        "accuracy.current_share", share(outcomes["current"], total), total,
        breakdown={k: outcomes[k] for k in ("current", "superseded", "deleted", "missing")})}


def used_served(bundles: Sequence[ServedBundle],
                feedback: Sequence[FeedbackRow]) -> tuple[int, int, int]:
    """(items used, items served, bundles with feedback); several feedback rows on one
    bundle count the union of the items they report used."""
    used_by_bundle: dict[str, set[str]] = defaultdict(set)
    for row in feedback:
        used_by_bundle[row.bundle_id].update(row.used_item_ids)
    used = served = rated = 0
    for bundle in bundles:
        if bundle.bundle_id not in used_by_bundle:
            continue
        ids = {str(i.get("id")) for i in bundle.items}
        rated += 1
        served += len(ids)
        used += len(ids & used_by_bundle[bundle.bundle_id])
    return used, served, rated


def relevance(bundles: Sequence[ServedBundle], feedback: Sequence[FeedbackRow],
              runs: Sequence[RunSummary]) -> dict[str, Any]:
    used, served, rated = used_served(bundles, feedback)
    return {
        "ndcg@10": _run_figure("relevance.ndcg@10", runs, "ndcg@10"),
        "mrr": _run_figure("relevance.mrr", runs, "mrr"),
        "used_served_ratio": figure("relevance.used_served_ratio", share(used, served), served,
                                    items_used=used, bundles_with_feedback=rated),
    }


def item_ages_days(bundles: Sequence[ServedBundle]) -> dict[str, list[float]]:
    ages: dict[str, list[float]] = defaultdict(list)
    for bundle in bundles:
        served_at = as_utc(bundle.created_at)
        for item in bundle.items:
            age = (served_at - parse_ts(item.get("updated_at"))).total_seconds() / DAY_SECONDS
            ages[str(item.get("kind"))].append(age)
            ages["all"].append(age)
    return ages


def freshness(bundles: Sequence[ServedBundle], health: Sequence[ConnectorHealth],
              now: datetime, objective_seconds: float) -> dict[str, Any]:
    ages = item_ages_days(bundles)
    per_kind = {kind: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
                for kind, v in sorted(ages.items())}
    all_ages = ages.get("all", [])
    connectors = []
    for c in health:
        # a sync after the window end counts as lag 0; never succeeded: no lag, not within
        lag = (max((now - c.last_success_at).total_seconds(), 0.0)
               if c.last_success_at else None)
        connectors.append({
            "connector": c.name, "registered": c.registered, "enabled": c.enabled,
            "connector_id": c.connector_id, "quarantined": c.quarantined,
            "last_success_at": iso(c.last_success_at) if c.last_success_at else None,
            "last_status": c.last_status, "last_error_code": c.last_error_code,
            "lag_seconds": lag,
            "within_objective": lag is not None and lag <= objective_seconds})
    within = sum(1 for c in connectors if c["within_objective"])
    return {
        "item_age_days": figure("freshness.item_age_days", percentile(all_ages, 50),
                                len(all_ages), p95=percentile(all_ages, 95), per_kind=per_kind),
        "connector_lag_seconds": figure("freshness.connector_lag_seconds",
                                        share(within, len(connectors)), len(connectors),
                                        objective_seconds=objective_seconds,
                                        connectors=connectors),
    }


def accessibility(requests: Sequence[RequestOutcome],
                  bundles: Sequence[ServedBundle]) -> dict[str, Any]:
    latencies = [r.latency_ms for r in requests]
    errors = sum(1 for r in requests if r.status >= 400)
    server_errors = sum(1 for r in requests if r.status >= 500)
    # found=true <=> an item reached min_relevance; items below it are never served, so
    # the stored items are the signal (an item's stored relevance says by how much).
    found = sum(1 for b in bundles if b.items)
    return {
        "latency_ms": figure("accessibility.latency_ms", percentile(latencies, 50),
                             len(latencies), p50=percentile(latencies, 50),
                             p95=percentile(latencies, 95), p99=percentile(latencies, 99)),
        "error_rate": figure("accessibility.error_rate", share(errors, len(requests)),
                             len(requests), errors=errors,
                             server_error_rate=share(server_errors, len(requests))),
        "found_context_rate": figure("accessibility.found_context_rate",
                                     share(found, len(bundles)), len(bundles)),
    }


def quality_snapshot(engine: Engine, *, start: datetime, end: datetime,
                     lag_objective_seconds: float) -> dict[str, Any]:
    """The five metrics over ``[start, end)``; connector lag is measured at ``end``."""
    with span("quality.snapshot"):
        return _snapshot(engine, start=start, end=end,
                         lag_objective_seconds=lag_objective_seconds)


def _snapshot(engine: Engine, *, start: datetime, end: datetime,
              lag_objective_seconds: float) -> dict[str, Any]:
    bundles = sources.bundles_between(engine, start, end)
    requests = sources.requests_between(engine, start, end)
    runs = sources.eval_runs_between(engine, start, end)
    feedback = sources.feedback_between(engine, start, end)
    states = sources.document_states(
        engine, ((str(i.get("source")), str(i.get("source_id"))) for b in bundles for i in b.items))
    window = {"start": iso(start), "end": iso(end),
              "hours": round((end - start).total_seconds() / 3600, 3)}
    parts = {
        "completeness": completeness(bundles, runs),
        "accuracy": accuracy(bundles, states),
        "relevance": relevance(bundles, feedback, runs),
        "freshness": freshness(bundles, sources.connector_health(engine, end), end,
                               lag_objective_seconds),
        "accessibility": accessibility(requests, bundles),
    }
    return {"window": window, "requests": len(requests), "bundles": len(bundles),
            "metrics": {name: {"definition": DEFINITIONS[name], "window": window,
                               "values": values} for name, values in parts.items()}}


def bucket_start(at: datetime, bucket: Bucket) -> datetime:
    at = as_utc(at)
    if bucket == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def quality_timeseries(engine: Engine, *, start: datetime, end: datetime,
                       bucket: Bucket) -> list[dict[str, Any]]:
    """Headline figures per hour or day bucket over ``[start, end)``, oldest first; every
    bucket is present (empty ones with None values) so plots keep a true time axis."""
    first = bucket_start(start, bucket)
    grouped: dict[datetime, dict[str, list[Any]]] = {}
    cursor = first
    while cursor < end:
        grouped[cursor] = {"bundles": [], "requests": [], "runs": []}
        cursor += BUCKET_SIZE[bucket]
    bundles = sources.bundles_between(engine, first, end)
    for b in bundles:
        grouped[bucket_start(b.created_at, bucket)]["bundles"].append(b)
    for r in sources.requests_between(engine, first, end):
        grouped[bucket_start(r.created_at, bucket)]["requests"].append(r)
    for run in sources.eval_runs_between(engine, first, end):
        grouped[bucket_start(run.created_at, bucket)]["runs"].append(run)
    feedback = sources.feedback_between(engine, first, end)
    states = sources.document_states(
        engine, ((str(i.get("source")), str(i.get("source_id"))) for b in bundles for i in b.items))
    series = []
    for at, rows in grouped.items():
        bundle_rows, request_rows = rows["bundles"], rows["requests"]
        access = accessibility(request_rows, bundle_rows)
        complete = completeness(bundle_rows, rows["runs"])
        rel = relevance(bundle_rows, feedback, rows["runs"])
        ages = item_ages_days(bundle_rows).get("all", [])
        series.append({
            "start": iso(at), "requests": len(request_rows), "bundles": len(bundle_rows),
            "requested_kinds_covered": complete["requested_kinds_covered"]["value"],
            "golden_recall_at_bundle": complete["golden_recall_at_bundle"]["value"],
            "accuracy": accuracy(bundle_rows, states)["current_share"]["value"],
            "ndcg@10": rel["ndcg@10"]["value"], "mrr": rel["mrr"]["value"],
            "used_served_ratio": rel["used_served_ratio"]["value"],
            "item_age_days_p50": percentile(ages, 50),
            "item_age_days_p95": percentile(ages, 95),
            "latency_ms_p50": access["latency_ms"]["p50"],
            "latency_ms_p95": access["latency_ms"]["p95"],
            "latency_ms_p99": access["latency_ms"]["p99"],
            "error_rate": access["error_rate"]["value"],
            "found_context_rate": access["found_context_rate"]["value"],
        })
    return series
