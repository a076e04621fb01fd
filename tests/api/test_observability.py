"""Metrics, traces, logs and costs, observed from outside through the real app."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from contextd.connectors.registry import build_connector
from contextd.core.logging import JsonFormatter, request_id_var
from contextd.core.telemetry import configure_tracing, span
from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups
from contextd.sync.pull import run_sync
from tests.conftest import SAMPLE_DATA, LiveServer
from tests.factories import keys

QUERIES = ["travel per diem", "support response time for priority 1", "gripper spare parts"]
EXPORTER = InMemorySpanExporter()
configure_tracing(extra_processor=SimpleSpanProcessor(EXPORTER))


def scrape(server: LiveServer, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with server.client(key) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    values = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def setup(runtime: Runtime, live_server: LiveServer) -> tuple[LiveServer, dict[str, str]]:
    set_user_groups(runtime.engine, user_id="ann", groups=["sales"])
    return live_server, keys(runtime.engine)


def test_metrics_move_by_the_right_amounts(setup, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    server, k = setup
    before = scrape(server, k["analyst"])
    connector = build_connector("obs-docs", "filesystem", {"path": str(SAMPLE_DATA / "docs"),
                                                            "default_acl": ["public"]})
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    served = 0
    with server.client(k["agent"]) as agent:
        for query in QUERIES:
            body = agent.post("/v1/context", json={"query": query, "user_id": "ann"}).json()
            served += body["token_count"]
        assert agent.post("/v1/context", json={"user_id": "ann"}).status_code == 422
    after = scrape(server, k["analyst"])
    assert delta(before, after, "contextd_sync_runs_total", connector="obs-docs",
                 outcome="success") == 1
    assert delta(before, after, "contextd_sync_records_pulled_total",
                 connector="obs-docs") == result.stats.records == 15
    assert delta(before, after, "contextd_sync_chunks_embedded_total",
                 connector="obs-docs") == result.stats.chunks_embedded > 0
    assert delta(before, after, "contextd_http_requests_total", method="POST",
                 route="/v1/context", status="200") == 3
    assert delta(before, after, "contextd_http_requests_total", method="POST",
                 route="/v1/context", status="422") == 1
    assert delta(before, after, "contextd_errors_total", code="invalid_input") == 1
    for stage in ("principals", "embed", "search", "rank", "pack"):
        assert delta(before, after, "contextd_context_stage_seconds_count", stage=stage) == 3
    assert delta(before, after, "contextd_tokens_served_total", agent="test-agent") == served
    assert delta(before, after, "contextd_embedding_batch_size_count", purpose="query") == 3
    assert delta(before, after, "contextd_embedding_batch_size_sum", purpose="document") == \
        result.stats.chunks_embedded
    assert after[("contextd_store_points", ())] == runtime.store.count()


def test_spans_of_a_context_request_carry_stages_but_not_the_query(setup) -> None:  # type: ignore[no-untyped-def]
    server, k = setup
    EXPORTER.clear()
    secret_query = "confidential merger with Helix"
    with server.client(k["agent"]) as agent:
        resp = agent.post("/v1/context", json={"query": secret_query, "user_id": "ann"})
    trace_id = resp.headers["x-trace-id"]

    def spans_of_trace() -> list:  # type: ignore[type-arg]
        return [s for s in EXPORTER.get_finished_spans()
                if format(s.context.trace_id, "032x") == trace_id]

    # The server span ends after the last response byte is sent: wait for it, bounded.
    deadline = time.monotonic() + 5
    while not any(s.name.startswith("HTTP ") for s in spans_of_trace()):
        assert time.monotonic() < deadline, "server span never ended"
        time.sleep(0.01)
    spans = spans_of_trace()
    names = {s.name for s in spans}
    assert "HTTP POST /v1/context" in names
    assert {"context.principals", "context.embed", "context.search", "context.rank",
            "context.pack"} <= names
    root = next(s for s in spans if s.name == "HTTP POST /v1/context")
    assert root.attributes["http.route"] == "/v1/context"
    assert root.attributes["http.response.status_code"] == 200
    for s in spans:
        assert secret_query not in json.dumps(dict(s.attributes or {}), default=str)


def test_costs_of_requests_add_up_to_daily_totals(setup, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    server, k = setup
    connector = build_connector("cost-crm", "crm_export", {"path": str(SAMPLE_DATA / "crm")})
    run = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    responses = []
    with server.client(k["agent"]) as agent:
        for query in QUERIES:
            responses.append(agent.post("/v1/context",
                                        json={"query": query, "user_id": "ann"}).json())
    today = datetime.now(UTC).date().isoformat()
    with server.client(k["analyst"]) as analyst:
        daily = analyst.get("/v1/costs", params={"days": 1}).json()
        events = analyst.get("/v1/costs/events", params={"day": today}).json()["events"]
        assert analyst.get("/v1/costs", params={"days": 0}).status_code == 422
    with server.client(k["agent"]) as agent:
        assert agent.get("/v1/costs").status_code == 403
    context_rows = [e for e in events if e["kind"] == "context"]
    assert len(context_rows) == 3
    assert sorted(e["embed_tokens"] for e in context_rows) == sorted(
        r["stats"]["cost"]["embed_tokens"] for r in responses)
    assert sum(e["served_tokens"] for e in context_rows) == sum(
        r["token_count"] for r in responses)
    sync_row = next(e for e in events if e["kind"] == "sync")
    assert sync_row["connector"] == "cost-crm" and sync_row["ref"] == run.run_id
    assert sync_row["embed_tokens"] == run.stats.embed_tokens > 0
    for name in ("embed_tokens", "served_tokens"):
        assert sum(e[name] for e in events) == daily["totals"][name]
    assert abs(sum(e["embed_cpu_seconds"] for e in events)
               - daily["totals"]["embed_cpu_seconds"]) < 1e-4
    agent_row = next(r for r in daily["daily"] if r["kind"] == "context")
    assert agent_row["subject"] == "test-agent" and agent_row["events"] == 3


def test_log_lines_carry_request_and_trace_ids() -> None:
    formatter = JsonFormatter()
    token = request_id_var.set("req-123")
    try:
        with span("unit-test"):
            record = logging.LogRecord("contextd.x", logging.INFO, __file__, 1, "hello", (), None)
            record.user_id = "ann"
            line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req-123"
    assert len(line["trace_id"]) == 32
    assert line["user_id"] == "ann" and line["msg"] == "hello"
