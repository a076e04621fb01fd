"""Regression detection against a golden set's baseline, and the alert it raises.

A metric regresses when it falls more than ``threshold`` (absolute, e.g. 0.05 = five
points of nDCG) below the pinned baseline. Each regression is logged (event
``quality_regression``), counted in ``contextd_quality_regressions_total`` and, when a
webhook is configured, POSTed there as JSON; a failing webhook is logged, never raised.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from prometheus_client import Counter, Gauge

from contextd.core.telemetry import REGISTRY

log = logging.getLogger(__name__)

COMPARED_METRICS = ("ndcg@10", "mrr", "recall@bundle")

QUALITY_REGRESSIONS = Counter(
    "contextd_quality_regressions_total",
    "Eval runs whose metric fell past the threshold below the golden set's baseline.",
    ["golden_set", "metric"], registry=REGISTRY)

EVAL_METRIC = Gauge(
    "contextd_quality_eval_metric",
    "The latest eval run's mean metric per golden set and configuration (e.g. hybrid, "
    "dense, bm25, hybrid-nofreshness).", ["golden_set", "config", "metric"], registry=REGISTRY)


def config_label(config: dict[str, Any]) -> str:
    mode = str(config.get("mode", "hybrid"))
    return mode if config.get("freshness", True) else f"{mode}-nofreshness"


def publish_run(golden_set: str, config: dict[str, Any], metrics: dict[str, float]) -> None:
    """Expose a run's figures as gauges so Prometheus can plot and alert on them too."""
    for metric in COMPARED_METRICS:
        if metric in metrics:
            EVAL_METRIC.labels(golden_set, config_label(config), metric).set(metrics[metric])


def compare(current: dict[str, float], baseline: dict[str, float],
            threshold: float) -> dict[str, dict[str, Any]]:
    """Per compared metric: baseline, current, delta and whether it regressed."""
    result = {}
    for metric in COMPARED_METRICS:
        if metric not in current or metric not in baseline:
            continue
        delta = current[metric] - baseline[metric]
        result[metric] = {"baseline": baseline[metric], "current": current[metric],
                          "delta": delta, "regressed": delta < -threshold}
    return result


def raise_alert(*, golden_set: str, run_id: str, baseline_run_id: str,
                config: dict[str, Any], regressions: dict[str, dict[str, Any]],
                threshold: float, webhook_url: str | None) -> dict[str, Any]:
    """Log, count and (optionally) POST one alert for the regressed metrics of a run.

    Returns what happened to the webhook, kept on the run for the dashboard.
    """
    payload = {"event": "quality_regression", "golden_set": golden_set, "run_id": run_id,
               "baseline_run_id": baseline_run_id, "config": config, "threshold": threshold,
               "regressions": regressions}
    for metric in regressions:
        QUALITY_REGRESSIONS.labels(golden_set, metric).inc()
    log.warning("quality regression", extra={
        "event": "quality_regression", "golden_set": golden_set, "run_id": run_id,
        "baseline_run_id": baseline_run_id, "metrics": sorted(regressions)})
    if not webhook_url:
        return {"webhook": "not configured"}
    try:
        response = httpx.post(webhook_url, json=payload, timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.error("quality webhook failed", extra={
            "event": "quality_webhook_failed", "run_id": run_id,
            "error": type(exc).__name__})
        return {"webhook": "failed", "error": type(exc).__name__}
    return {"webhook": "delivered", "status": response.status_code}
