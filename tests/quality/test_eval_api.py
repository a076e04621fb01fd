"""Golden sets, eval runs against the live index, baselines and regression alerts, over
real HTTP (uvicorn), with a real local webhook receiver."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from contextd.core.telemetry import REGISTRY
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys
from tests.pg import scratch_database
from tests.quality.corpus import QRELS, QUERIES, RECORDS
from tests.quality.receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def server(make_runtime: Callable[..., Runtime],
           receiver: WebhookReceiver) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    runtime = make_runtime(quality_webhook_url=receiver.url, quality_regression_threshold=0.05)
    runtime.ingestor.ingest(RECORDS)
    with LiveServer(runtime) as live:
        yield live, keys(runtime.engine)


def golden_json(name: str = "policies") -> dict[str, Any]:
    return {"name": name, "description": "current policies beat old ones",
            "queries": [{"id": q, "text": t} for q, t in QUERIES.items()], "qrels": QRELS}


def regressions_counted(golden_set: str, metric: str) -> float:
    return REGISTRY.get_sample_value("contextd_quality_regressions_total",
                                     {"golden_set": golden_set, "metric": metric}) or 0.0


def ndcg_by_hand(ranked: list[str], judged: dict[str, int]) -> float:
    import math

    dcg = sum((2 ** judged.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
    return dcg / sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))


# A budget too small for any item makes every metric fall, whatever the ranking does.
@pytest.mark.parametrize("degraded", [{"mode": "hybrid", "freshness": False, "token_budget": 1},
                                      {"mode": "dense", "token_budget": 1}])
def test_degraded_config_is_flagged_against_the_hybrid_baseline(
        server: tuple[LiveServer, dict[str, str]], receiver: WebhookReceiver,
        degraded: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    live, k = server
    with live.client(k["analyst"]) as analyst:
        created = analyst.post("/v1/golden-sets", json=golden_json())
        assert created.status_code == 201, created.text
        set_id = created.json()["id"]
        assert created.json()["queries"] == len(QUERIES)

        base = analyst.post("/v1/eval/runs", json={"golden_set": "policies"})
        assert base.status_code == 201, base.text
        baseline = base.json()
        assert baseline["config"] == {"mode": "hybrid", "freshness": True,
                                      "token_budget": 2000, "top_k": 20}
        assert baseline["baseline_run_id"] is None and not baseline["regressed"]
        # the stored figures are the means of the per-query figures, recomputed here
        per_query = {q["id"]: q for q in baseline["per_query"]}
        for qid, judged in QRELS.items():
            assert per_query[qid]["ndcg@10"] == pytest.approx(
                ndcg_by_hand(per_query[qid]["ranked"], judged))
        assert baseline["metrics"]["ndcg@10"] == pytest.approx(
            sum(q["ndcg@10"] for q in per_query.values()) / len(QRELS))

        pinned = analyst.put(f"/v1/golden-sets/{set_id}/baseline",
                             json={"run_id": baseline["id"]})
        assert pinned.status_code == 200 and pinned.json()["baseline_run_id"] == baseline["id"]

        same = analyst.post("/v1/eval/runs", json={"golden_set": set_id}).json()
        assert same["baseline_run_id"] == baseline["id"] and same["regressed"] is False
        assert receiver.received == []

        before = regressions_counted("policies", "ndcg@10")
        with caplog.at_level(logging.WARNING, logger="contextd.quality.alerts"):
            worse = analyst.post("/v1/eval/runs",
                                 json={"golden_set": set_id, "config": degraded})
        assert worse.status_code == 201, worse.text
        run = worse.json()
        ndcg = run["comparison"]["metrics"]["ndcg@10"]
        assert run["regressed"] is True
        assert ndcg["regressed"] and ndcg["delta"] < -0.05
        assert ndcg["baseline"] == pytest.approx(baseline["metrics"]["ndcg@10"])
        assert run["comparison"]["alert"] == {"webhook": "delivered", "status": 200}
        # alert: a log record, a counter, and the webhook
        assert regressions_counted("policies", "ndcg@10") == before + 1
        events = [r for r in caplog.records if getattr(r, "event", "") == "quality_regression"]
        assert [e.run_id for e in events] == [run["id"]]  # type: ignore[attr-defined]
        assert len(receiver.received) == 1
        hook = receiver.received[0]
        assert hook["path"] == "/hooks/quality" and hook["content_type"] == "application/json"
        assert hook["body"]["run_id"] == run["id"]
        assert hook["body"]["baseline_run_id"] == baseline["id"]
        assert "ndcg@10" in hook["body"]["regressions"]
        label = "dense" if degraded["mode"] == "dense" else "hybrid-nofreshness"
        assert REGISTRY.get_sample_value("contextd_quality_eval_metric", {
            "golden_set": "policies", "config": label, "metric": "ndcg@10"}) == pytest.approx(
            run["metrics"]["ndcg@10"])

        listed = analyst.get("/v1/eval/runs", params={"golden_set": "policies"}).json()
        assert [r["id"] for r in listed] == [run["id"], same["id"], baseline["id"]]
        assert analyst.get(f"/v1/eval/runs/{run['id']}").json()["regressed"] is True
        # /v1/quality reports the latest run under the served configuration
        quality = analyst.get("/v1/quality").json()
        relevance = quality["metrics"]["relevance"]["values"]["ndcg@10"]
        assert relevance["run_id"] == same["id"]
        assert relevance["value"] == pytest.approx(same["metrics"]["ndcg@10"])


def test_webhook_failure_is_logged_not_raised(
        server: tuple[LiveServer, dict[str, str]], receiver: WebhookReceiver) -> None:
    live, k = server
    receiver.status = 500
    with live.client(k["analyst"]) as analyst:
        set_id = analyst.post("/v1/golden-sets", json=golden_json()).json()["id"]
        base = analyst.post("/v1/eval/runs", json={"golden_set": set_id}).json()
        analyst.put(f"/v1/golden-sets/{set_id}/baseline", json={"run_id": base["id"]})
        run = analyst.post("/v1/eval/runs", json={"golden_set": set_id,
                                                  "config": {"token_budget": 1}})
    assert run.status_code == 201
    assert run.json()["comparison"]["alert"] == {"webhook": "failed",
                                                 "error": "HTTPStatusError"}
    assert len(receiver.received) == 1


def test_beir_upload_creates_a_golden_set(server: tuple[LiveServer, dict[str, str]]) -> None:
    live, k = server
    queries = "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, judged in QRELS.items() for d, g in judged.items())
    with live.client(k["analyst"]) as analyst:
        resp = analyst.post("/v1/golden-sets/beir", data={"name": "beir-set",
                                                          "sources": "docs"},
                            files={"queries": ("queries.jsonl", queries),
                                   "qrels": ("test.tsv", qrels)})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert (body["origin"], body["queries"], body["sources"]) == ("beir", 5, ["docs"])
        assert body["judgments"] == sum(len(j) for j in QRELS.values())
        full = analyst.get("/v1/golden-sets/beir-set").json()
        assert full["qrels"] == QRELS
        assert [g["name"] for g in analyst.get("/v1/golden-sets").json()] == ["beir-set"]
        run = analyst.post("/v1/eval/runs", json={"golden_set": "beir-set"})
        assert run.status_code == 201 and run.json()["metrics"]["queries"] == 5.0

        bad_qrels = analyst.post("/v1/golden-sets/beir", data={"name": "x"},
                                 files={"queries": ("q.jsonl", queries),
                                        "qrels": ("t.tsv", "q-vpn vpn-2026 two\n")})
        assert bad_qrels.status_code == 422
        assert bad_qrels.json()["error"]["details"][0]["field"] == "qrels"
        bad_queries = analyst.post("/v1/golden-sets/beir", data={"name": "x"},
                                   files={"queries": ("q.jsonl", "{not json\n"),
                                          "qrels": ("t.tsv", qrels)})
        assert bad_queries.status_code == 422
        assert bad_queries.json()["error"]["details"][0]["field"] == "queries"
        missing = analyst.post("/v1/golden-sets/beir", data={"name": "x"},
                               files={"queries": ("q.jsonl", queries)})
        assert missing.status_code == 422
        assert missing.json()["error"]["details"][0]["field"] == "qrels"
        assert [g["name"] for g in analyst.get("/v1/golden-sets").json()] == ["beir-set"]


def _field(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["details"][0]["field"])


def test_bad_input_is_a_precise_error_and_saves_nothing(
        server: tuple[LiveServer, dict[str, str]]) -> None:
    live, k = server
    with live.client(k["analyst"]) as analyst:
        unknown_doc = golden_json("g1")
        unknown_doc["qrels"] = {**QRELS, "q-vpn": {"no-such-doc": 1}}
        resp = analyst.post("/v1/golden-sets", json=unknown_doc)
        assert resp.status_code == 422 and _field(resp) == "qrels"
        assert resp.json()["error"]["details"][0]["unknown_ids"] == ["no-such-doc"]

        unjudged = golden_json("g2")
        unjudged["qrels"] = {q: j for q, j in QRELS.items() if q != "q-vpn"}
        resp = analyst.post("/v1/golden-sets", json=unjudged)
        assert resp.status_code == 422 and _field(resp) == "qrels"

        dup = golden_json("g3")
        dup["queries"].append({"id": "q-vpn", "text": "again"})
        resp = analyst.post("/v1/golden-sets", json=dup)
        assert resp.status_code == 422 and _field(resp) == "queries.5.id"

        negative = golden_json("g4")
        negative["qrels"] = {**QRELS, "q-vpn": {"vpn-2026": -1}}
        assert _field(analyst.post("/v1/golden-sets", json=negative)) == "qrels.q-vpn"

        extra = {**golden_json("g5"), "surprise": 1}
        assert _field(analyst.post("/v1/golden-sets", json=extra)) == "surprise"
        assert analyst.get("/v1/golden-sets").json() == []

        assert analyst.post("/v1/golden-sets", json=golden_json("ok")).status_code == 201
        taken = analyst.post("/v1/golden-sets", json=golden_json("ok"))
        assert taken.status_code == 409 and _field(taken) == "name"

        assert analyst.post("/v1/eval/runs", json={"golden_set": "nope"}).status_code == 404
        resp = analyst.post("/v1/eval/runs", json={"golden_set": "ok",
                                                   "config": {"mode": "fancy"}})
        assert resp.status_code == 422 and _field(resp) == "config.mode"
        resp = analyst.post("/v1/eval/runs", json={"golden_set": "ok",
                                                   "config": {"token_budget": 10 ** 9}})
        assert resp.status_code == 422 and _field(resp) == "config.token_budget"
        assert analyst.get("/v1/eval/runs").json() == []

        other = analyst.post("/v1/golden-sets", json=golden_json("other")).json()
        run = analyst.post("/v1/eval/runs", json={"golden_set": "other"}).json()
        resp = analyst.put("/v1/golden-sets/ok/baseline", json={"run_id": run["id"]})
        assert resp.status_code == 422 and _field(resp) == "run_id"
        assert analyst.put("/v1/golden-sets/ok/baseline",
                           json={"run_id": "missing"}).status_code == 404
        assert analyst.get("/v1/golden-sets/ok").json()["baseline_run_id"] is None
        assert other["baseline_run_id"] is None

        resp = analyst.get("/v1/quality", params={"hours": 0})
        assert resp.status_code == 422 and _field(resp) == "query.hours"
        resp = analyst.get("/v1/quality/timeseries", params={"bucket": "week"})
        assert resp.status_code == 422 and _field(resp) == "query.bucket"


def test_roles(server: tuple[LiveServer, dict[str, str]]) -> None:
    live, k = server
    calls = [("GET", "/v1/quality", None), ("GET", "/v1/quality/timeseries", None),
             ("GET", "/v1/golden-sets", None), ("POST", "/v1/golden-sets", golden_json()),
             ("POST", "/v1/eval/runs", {"golden_set": "x"}), ("GET", "/v1/eval/runs", None)]
    with live.client() as anonymous, live.client(k["agent"]) as agent, \
            live.client(k["admin"]) as admin:
        for method, path, body in calls:
            assert anonymous.request(method, path, json=body).status_code == 401, path
            assert agent.request(method, path, json=body).status_code == 403, path
        assert admin.get("/v1/quality").status_code == 200


def test_golden_sets_runs_and_alerts_on_postgresql(make_runtime: Callable[..., Runtime],
                                                   receiver: WebhookReceiver) -> None:
    with scratch_database("ctx6") as url:
        runtime = make_runtime(database_url=url, quality_webhook_url=receiver.url)
        runtime.ingestor.ingest(RECORDS)
        k = keys(runtime.engine)
        with LiveServer(runtime) as live, live.client(k["analyst"]) as analyst:
            set_id = analyst.post("/v1/golden-sets", json=golden_json()).json()["id"]
            taken = analyst.post("/v1/golden-sets", json=golden_json())
            assert taken.status_code == 409
            base = analyst.post("/v1/eval/runs", json={"golden_set": set_id}).json()
            assert analyst.put(f"/v1/golden-sets/{set_id}/baseline",
                               json={"run_id": base["id"]}).status_code == 200
            worse = analyst.post("/v1/eval/runs", json={
                "golden_set": set_id, "config": {"freshness": False, "token_budget": 1}}).json()
            assert worse["regressed"] and worse["baseline_run_id"] == base["id"]
            assert [h["body"]["run_id"] for h in receiver.received] == [worse["id"]]
            relevance = analyst.get("/v1/quality").json()["metrics"]["relevance"]["values"]
            assert relevance["ndcg@10"]["run_id"] == base["id"]
            assert analyst.get("/dashboard").status_code == 200
        runtime.close()
