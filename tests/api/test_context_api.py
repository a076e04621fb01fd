"""End-to-end over real HTTP: the context endpoint's contract, errors and auth."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from contextd.runtime import Runtime
from contextd.state.keys import revoke_key
from contextd.state.principals import set_user_groups
from tests.conftest import LiveServer
from tests.factories import keys, record

CORPUS = [
    record("handbook.md", "Support tickets are answered within four business hours. "
           "Escalate outages to the on-call engineer.", title="Support handbook"),
    record("pricing.md", "Discounts above 15 percent need approval from the sales director.",
           acl=("group:sales",), title="Pricing playbook"),
    record("forecast.md", "The Q3 forecast shows EBITDA of 4.2 million and revenue growth.",
           acl=("group:finance",), title="Q3 forecast"),
    record("travel-2024.md", "Travel per diem is 50 EUR per day.", title="Travel policy",
           updated_at=datetime(2024, 3, 1, tzinfo=UTC), entity_key="policy:travel"),
    record("travel-2026.md", "Travel per diem is 75 EUR per day, hotels up to 160 EUR.",
           title="Travel policy", updated_at=datetime(2026, 9, 15, tzinfo=UTC),
           entity_key="policy:travel"),
]


@pytest.fixture
def api(runtime: Runtime, live_server: LiveServer) -> tuple[LiveServer, dict[str, str]]:
    runtime.ingestor.ingest(CORPUS)
    set_user_groups(runtime.engine, user_id="alice", groups=["sales"])
    set_user_groups(runtime.engine, user_id="bob", groups=["finance"])
    return live_server, keys(runtime.engine)


def _ctx(server: LiveServer, key: str, **body: object):  # type: ignore[no-untyped-def]
    with server.client(key) as client:
        return client.post("/v1/context", json={"user_id": "alice", **body})


def test_bundle_has_the_contract_fields_and_respects_the_budget(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    resp = _ctx(server, k["agent"], query="how fast are support tickets answered?",
                token_budget=200)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert resp.headers["x-request-id"]
    assert set(body) >= {"bundle_id", "query", "user_id", "generated_at", "items", "memory",
                         "token_count", "truncated", "stats"}
    assert body["items"], body
    top = body["items"][0]
    assert top["source_id"] == "handbook.md"
    for item in body["items"]:
        for name in ("id", "kind", "source", "source_id", "title", "uri", "text", "updated_at",
                     "score", "relevance", "freshness", "citation"):
            assert name in item
        assert 0 < item["freshness"] <= 1
        assert item["citation"]
    assert body["token_count"] <= 200
    assert set(body["stats"]["stages_ms"]) >= {"principals", "embed", "search", "pack"}
    assert body["found"] is True and body["found_reason"] and body["warnings"] == []
    assert "dropped" not in body and top["explain"] is None
    assert top["updated_at_source"] == "source"
    explained = _ctx(server, k["agent"], query="how fast are support tickets answered?",
                     token_budget=200, explain=True, min_relevance=0.0).json()
    why = explained["items"][0]["explain"]
    assert why["dense_rank"] >= 1 and why["bm25_rank"] >= 1 and "support" in why[
        "matched_terms"] and why["freshness_clock"] == "source"
    assert isinstance(explained["dropped"], list)  # all four visible items fit here


def test_newer_policy_version_ranks_first(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    body = _ctx(server, k["agent"], query="travel per diem").json()
    travel = [i for i in body["items"] if i["entity_key"] == "policy:travel"]
    assert travel[0]["source_id"] == "travel-2026.md"


@pytest.mark.parametrize("budget", [1, 5, 20, 37, 64, 150, 400])
def test_token_count_never_exceeds_budget(api, budget: int) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    body = _ctx(server, k["agent"], query="policy per diem support discount",
                token_budget=budget).json()
    assert body["token_count"] <= budget
    assert sum(i["tokens"] for i in body["items"]) == body["token_count"]


def test_group_membership_change_applies_on_next_request(api, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    with server.client(k["admin"]) as admin:
        assert admin.put("/v1/principals/carol", json={"groups": ["finance"]}).status_code == 200
        seen = {i["source_id"] for i in _ctx(server, k["agent"], user_id="carol",
                                             query="EBITDA forecast").json()["items"]}
        assert "forecast.md" in seen
        assert admin.put("/v1/principals/carol", json={"groups": []}).status_code == 200
    seen = {i["source_id"] for i in _ctx(server, k["agent"], user_id="carol",
                                         query="EBITDA forecast").json()["items"]}
    assert "forecast.md" not in seen


def test_unknown_user_sees_only_public(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    body = _ctx(server, k["agent"], user_id="mallory", query="discount approval EBITDA",
                min_relevance=0.0).json()
    assert body["items"]
    assert {i["source_id"] for i in body["items"]} <= {"handbook.md", "travel-2024.md",
                                                       "travel-2026.md"}
    # Nothing mallory can see is about discounts or EBITDA: by default, found is false.
    default = _ctx(server, k["agent"], user_id="mallory", query="discount approval EBITDA")
    assert default.json()["found"] is False and default.json()["items"] == []
    assert "min_relevance" in default.json()["found_reason"]


BAD_BODIES = [
    ({}, "query"),
    ({"query": "x"}, "user_id"),
    ({"query": "", "user_id": "alice"}, "query"),
    ({"query": "   ", "user_id": "alice"}, "query"),
    ({"query": "x", "user_id": "alice", "token_budget": -5}, "token_budget"),
    ({"query": "x", "user_id": "alice", "token_budget": 0}, "token_budget"),
    ({"query": "x", "user_id": "alice", "token_budget": 10**9}, "token_budget"),
    ({"query": "x", "user_id": "alice", "top_k": 0}, "top_k"),
    ({"query": "x", "user_id": "alice", "top_k": 10**6}, "top_k"),
    ({"query": "x", "user_id": "alice", "kinds": ["spreadsheet"]}, "kinds"),
    ({"query": "x", "user_id": "alice", "kinds": []}, "kinds"),
    ({"query": "x", "user_id": "alice", "surprise": 1}, "surprise"),
    ({"query": "x", "user_id": "al ice"}, "user_id"),
    ({"query": 42, "user_id": "alice"}, "query"),
    ({"query": "x", "user_id": "alice", "freshness": {"half_life_days": {"email": -1}}},
     "freshness"),
    ({"query": "x", "user_id": "alice", "freshness": {"half_life_days": {"tweets": 3}}},
     "freshness"),
    ({"query": "x" * 5000, "user_id": "alice"}, "query"),
    ({"query": "x", "user_id": "alice", "min_relevance": 1.5}, "min_relevance"),
    ({"query": "x", "user_id": "alice", "explain": "maybe"}, "explain"),
    ({"query": "x", "user_id": "alice", "as_of": "2026-01-01T00:00:00"}, "as_of"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_input_is_422_naming_the_field(api, body: dict[str, object], field: str) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    with server.client(k["agent"]) as client:
        resp = client.post("/v1/context", json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in resp.text


def test_oversized_query_is_413(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    resp = _ctx(server, k["agent"], query="word " * 20_000)  # 100 kB
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_malformed_json_and_wrong_types_are_4xx_json(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    with server.client(k["agent"]) as client:
        for content in (b"{not json", b"[]", b"null", b"\xff\xfe", b""):
            resp = client.post("/v1/context", content=content,
                               headers={"Content-Type": "application/json"})
            assert 400 <= resp.status_code < 500, (content, resp.status_code)
            assert "error" in resp.json()


def test_auth_failures(api, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    body = {"query": "x", "user_id": "alice"}
    with server.client() as anon:
        resp = anon.post("/v1/context", json=body)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthenticated"
    for bad in ("nonsense", "ctxd_deadbeef_secret", k["agent"] + "x", k["agent"][:-1]):
        with server.client(bad) as client:
            assert client.post("/v1/context", json=body).status_code == 401
    with server.client(k["analyst"]) as analyst:
        resp = analyst.post("/v1/context", json=body)
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "forbidden"
    key_id = k["agent"].split("_")[1]
    revoke_key(runtime.engine, key_id=key_id)
    with server.client(k["agent"]) as revoked:
        assert revoked.post("/v1/context", json=body).status_code == 401


def test_unknown_route_and_method_are_json(api) -> None:  # type: ignore[no-untyped-def]
    server, k = api
    with server.client(k["admin"]) as client:
        assert client.get("/v1/nope").json()["error"]["code"] == "not_found"
        resp = client.get("/v1/context")
        assert resp.status_code == 405
        assert resp.json()["error"]["code"] == "method_not_allowed"


def test_every_served_bundle_is_recorded_without_its_query_text(api) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    from contextd.state.bundles import query_hash
    from contextd.state.tables import BundleServed

    server, k = api
    body = _ctx(server, k["agent"], query="discount approval", session_id="s1",
                kinds=["document"], token_budget=300).json()
    runtime = server.runtime
    deadline = time.monotonic() + 5
    row = None
    while row is None and time.monotonic() < deadline:  # written after the reply
        with Session(runtime.engine) as session:
            row = session.exec(select(BundleServed)
                               .where(BundleServed.bundle_id == body["bundle_id"])).first()
    assert row is not None
    assert (row.user_id, row.session_id, row.kinds_requested) == ("alice", "s1", ["document"])
    assert row.query is None and row.query_hash == query_hash("discount approval")
    assert [i["id"] for i in row.items] == [i["id"] for i in body["items"]]
    assert row.token_count == body["token_count"] <= row.token_budget == 300
    assert row.items[0]["doc_version"] >= 1 and row.latency_ms > 0
