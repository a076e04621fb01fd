"""Every quality metric on a seeded history equals the value worked out by hand (see
seed.py), on SQLite and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from contextd.quality.metrics import quality_snapshot, quality_timeseries
from tests.pg import service_engine
from tests.quality.seed import END, EXPECTED, START, seed


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with service_engine(request.param, tmp_path) as engine:
        yield engine


def check(snapshot: dict[str, Any]) -> None:
    """Assert every figure of ``snapshot`` (the /v1/quality body) against EXPECTED."""
    m = {name: part["values"] for name, part in snapshot["metrics"].items()}

    def fig(path: str) -> dict[str, Any]:
        group, name = path.split(".", 1)
        return m[group][name]  # type: ignore[no-any-return]

    for path in ("completeness.requested_kinds_covered", "completeness.golden_recall_at_bundle",
                 "accuracy.current_share", "relevance.ndcg@10", "relevance.mrr",
                 "relevance.used_served_ratio", "freshness.item_age_days",
                 "freshness.connector_lag_seconds", "accessibility.latency_ms",
                 "accessibility.error_rate", "accessibility.found_context_rate"):
        value, n = EXPECTED[path]
        assert fig(path)["value"] == pytest.approx(value), path
        assert fig(path)["n"] == n, path
        assert fig(path)["definition"], path
    assert fig("accuracy.current_share")["breakdown"] == EXPECTED["accuracy.breakdown"]
    assert fig("completeness.golden_recall_at_bundle")["run_id"] == "r1"
    assert fig("relevance.used_served_ratio")["items_used"] == 2
    ages = fig("freshness.item_age_days")
    assert ages["p95"] == pytest.approx(EXPECTED["freshness.item_age_days.p95"])
    for kind, (p50, p95, n) in EXPECTED["freshness.per_kind"].items():
        assert ages["per_kind"][kind]["p50"] == pytest.approx(p50), kind
        assert ages["per_kind"][kind]["p95"] == pytest.approx(p95), kind
        assert ages["per_kind"][kind]["n"] == n
    lag = fig("freshness.connector_lag_seconds")
    lags = {c["connector"]: c["lag_seconds"] for c in lag["connectors"]}
    assert lags.pop("wiki") is None and EXPECTED["freshness.lags"]["wiki"] is None
    assert lags == pytest.approx({k: v for k, v in EXPECTED["freshness.lags"].items()
                                  if k != "wiki"})
    by_name = {c["connector"]: c for c in lag["connectors"]}
    assert (by_name["crm"]["last_status"], by_name["crm"]["last_error_code"]) == (
        "failed", "source_auth")
    assert by_name["crm"]["registered"] and not by_name["docs"]["registered"]
    assert by_name["wiki"]["enabled"] is False and not by_name["wiki"]["within_objective"]
    assert lag["objective_seconds"] == 86400.0
    latency = fig("accessibility.latency_ms")
    assert latency["p50"] == pytest.approx(30.0)
    assert latency["p95"] == pytest.approx(EXPECTED["accessibility.latency_ms.p95"])
    assert latency["p99"] == pytest.approx(EXPECTED["accessibility.latency_ms.p99"])
    assert fig("accessibility.error_rate")["server_error_rate"] == pytest.approx(0.2)
    assert snapshot["requests"] == 5 and snapshot["bundles"] == 4
    for part in snapshot["metrics"].values():
        assert part["definition"] and part["window"]["hours"] == 24


def test_every_metric_equals_the_hand_computed_value(engine: Engine) -> None:
    seed(engine)
    check(quality_snapshot(engine, start=START, end=END, lag_objective_seconds=86400.0))


def test_timeseries_buckets_hold_the_same_arithmetic(engine: Engine) -> None:
    seed(engine)
    hourly = {b["start"][:13]: b for b in
              quality_timeseries(engine, start=START, end=END, bucket="hour")}
    assert len(hourly) == 24
    b1 = hourly["2026-11-25T10"]  # B1 alone, and the 200 at 09:00 is its own bucket
    assert (b1["bundles"], b1["accuracy"], b1["requested_kinds_covered"]) == (1, 1.0, 1.0)
    assert b1["used_served_ratio"] == pytest.approx(2 / 3)
    assert hourly["2026-11-25T06"]["accuracy"] == pytest.approx(0.5)  # B2: d3 deleted
    assert hourly["2026-11-25T05"]["error_rate"] == 1.0  # the 500 at 05:00
    assert hourly["2026-11-25T08"]["ndcg@10"] == pytest.approx(0.6)  # r1
    assert hourly["2026-11-25T09"]["ndcg@10"] is None  # r2 is not the default config
    assert hourly["2026-11-25T11"]["requests"] == 0
    assert hourly["2026-11-25T11"]["latency_ms_p50"] is None
    daily = {b["start"][:10]: b for b in
             quality_timeseries(engine, start=START, end=END, bucket="day")}
    assert list(daily) == ["2026-11-24", "2026-11-25"]
    # whole days: 11-24 holds B0 (d1 current), B3 (d4 superseded, d9 missing), B4
    assert daily["2026-11-24"]["accuracy"] == pytest.approx(1 / 3)
    assert daily["2026-11-24"]["bundles"] == 3
    assert daily["2026-11-25"]["accuracy"] == pytest.approx(4 / 5)
    assert daily["2026-11-25"]["latency_ms_p50"] == pytest.approx(30.0)
