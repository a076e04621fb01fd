"""``GET /v1/quality`` and the timeseries over real HTTP on the seeded history, and the
middleware that records every ``POST /v1/context`` outcome (failures included)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import context_rows, keys, record
from tests.quality.seed import END, seed
from tests.quality.test_metrics import check


def test_quality_endpoint_serves_the_hand_computed_metrics(
        live_server: LiveServer, runtime: Runtime) -> None:
    seed(runtime.engine)
    k = keys(runtime.engine)
    with live_server.client(k["analyst"]) as analyst:
        resp = analyst.get("/v1/quality", params={"hours": 24, "end": END.isoformat()})
        assert resp.status_code == 200, resp.text
        check(resp.json())
        series = analyst.get("/v1/quality/timeseries",
                             params={"bucket": "day", "hours": 24, "end": END.isoformat()})
        assert series.status_code == 200
        days = {b["start"][:10]: b for b in series.json()["series"]}
        assert days["2026-11-25"]["accuracy"] == pytest.approx(4 / 5)
        too_many = analyst.get("/v1/quality/timeseries", params={"bucket": "hour",
                                                                "hours": 2160})
        assert too_many.status_code == 200
        assert len(too_many.json()["series"]) in (2160, 2161)



def test_every_authenticated_context_outcome_is_recorded_for_the_error_rate(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(max_request_bytes=2048)
    runtime.ingestor.ingest([record("doc-1", "The travel per diem is 75 dollars a day.")])
    k = keys(runtime.engine)
    body = {"query": "travel per diem", "user_id": "alice"}
    with LiveServer(runtime) as live, live.client(k["agent"]) as agent, \
            live.client() as anonymous, live.client(k["analyst"]) as analyst:
        ok = agent.post("/v1/context", json=body)
        assert ok.status_code == 200 and ok.json()["items"]
        assert agent.post("/v1/context", json={"user_id": "alice"}).status_code == 422
        assert anonymous.post("/v1/context", json=body).status_code == 401
        assert agent.post("/v1/context", json={**body, "query": "x" * 4000}).status_code == 413
        assert analyst.post("/v1/context", json=body).status_code == 403
        assert agent.get("/v1/quality").status_code == 403  # not a context call: not recorded
        rows = context_rows(runtime.engine, 3)
        # Refused before a key was known (401, 413 over the service limit): no row.
        assert sorted(r.status for r in rows) == [200, 403, 422]
        assert all(r.latency_ms > 0 and len(r.request_id) == 32 for r in rows)
        access = analyst.get("/v1/quality").json()["metrics"]["accessibility"]["values"]
    assert access["error_rate"]["value"] == pytest.approx(2 / 3)
    assert access["error_rate"]["n"] == 3
    assert access["found_context_rate"]["value"] == 1.0
    assert access["latency_ms"]["p99"] == pytest.approx(
        float(np.percentile([r.latency_ms for r in rows], 99)))
