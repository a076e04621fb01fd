"""Interactions over real HTTP on SQLite and PostgreSQL: recall into bundles (that user's
only, session first), listing, validation with nothing stored, feedback, forgetting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, func, select

from contextd.core.types import utcnow
from contextd.memory.interactions import memory_source
from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups
from contextd.state.tables import (
    BundleServed,
    FeedbackRow,
    InteractionEntity,
    InteractionRow,
)
from tests.conftest import LiveServer
from tests.factories import keys, record
from tests.memory.conftest import deal

CORPUS = [
    record("travel.md", "Travel per diem is 75 EUR per day, hotels up to 160 EUR.",
           title="Travel policy"),
    record("support.md", "Support tickets are answered within four business hours.",
           title="Support handbook"),
]
ACME = {"query": "What is the status of the Acme renewal?",
        "summary": "Acme Logistics renewal is in negotiation at 1.2M; Jane Porter wants a "
                   "3-year term with a 12% discount before signing in December."}


@pytest.fixture
def api(mem_runtime: Runtime, mem_server: LiveServer) -> tuple[LiveServer, dict[str, str]]:
    mem_runtime.ingestor.ingest([*CORPUS, deal("negotiation", datetime(2026, 11, 10,
                                                                        tzinfo=UTC))])
    set_user_groups(mem_runtime.engine, user_id="alice", groups=["sales"])
    set_user_groups(mem_runtime.engine, user_id="bob", groups=["sales"])
    return mem_server, keys(mem_runtime.engine)


def _count(runtime: Runtime, table: type, **where: object) -> int:
    engine = runtime.engine if table in (FeedbackRow, BundleServed) else runtime.memory_engine
    with Session(engine) as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return int(session.exec(query).one())


def _served(runtime: Runtime, bundle_id: str) -> str:
    """Wait (bounded) for the bundle's row, which is written just after the response."""
    deadline = time.monotonic() + 10
    while _count(runtime, BundleServed, bundle_id=bundle_id) == 0:
        assert time.monotonic() < deadline, "bundle was never recorded"
        time.sleep(0.02)
    return bundle_id


def test_acme_renewal_is_recalled_for_the_same_user_never_another(
        api: tuple[LiveServer, dict[str, str]], mem_runtime: Runtime) -> None:
    server, k = api
    with server.client(k["agent"]) as client:
        resp = client.post("/v1/interactions", json={
            "user_id": "alice", "session_id": "s-1", "entities": ["deal:D-101"], **ACME})
        assert resp.status_code == 201, resp.text
        saved = resp.json()
        client.post("/v1/interactions", json={"user_id": "bob", "query": "Bob's question "
                    "about the travel per diem", "summary": "75 EUR per day."})
        ask = {"query": "Prepare me for the Acme renewal call: discount and term?"}
        alice = client.post("/v1/context", json={**ask, "user_id": "alice"}).json()
        bob = client.post("/v1/context", json={**ask, "user_id": "bob"}).json()
        other = client.post("/v1/context", json={"query": "hotel limit when travelling",
                                                 "user_id": "alice"}).json()
        off = client.post("/v1/context", json={**ask, "user_id": "alice",
                                               "include_memory": False}).json()
    assert alice["memory_status"] == "ok"
    recalled = alice["memory"]
    assert [m["interaction_id"] for m in recalled] == [saved["id"]]
    assert recalled[0]["summary"] == ACME["summary"] and recalled[0]["relevance"] >= 0.35
    assert {f["entity"] for f in alice["facts"]} >= {"deal:D-101"}  # both fit the share
    # Bob sees the same deal (same group) but never Alice's memory.
    assert bob["memory_status"] == "ok" and saved["id"] not in {
        m["interaction_id"] for m in bob["memory"]}
    assert all("Acme" not in m["query"] for m in bob["memory"])
    # An unrelated query does not drag the Acme conversation along.
    assert other["memory"] == []
    assert off["memory_status"] == "disabled" and off["memory"] == []
    # Memory shares the budget with items.
    assert alice["token_count"] == sum(i["tokens"] for i in alice["items"]) + sum(
        m["tokens"] for m in alice["memory"]) + sum(f["tokens"] for f in alice["facts"])
    # The memory collection is never searched for items.
    assert all(i["kind"] != "interaction" for i in alice["items"])


def test_same_session_comes_first_and_memory_respects_the_budget(
        api: tuple[LiveServer, dict[str, str]]) -> None:
    server, k = api
    long_ago = (utcnow() - timedelta(days=200)).isoformat()
    with server.client(k["agent"]) as client:
        old = client.post("/v1/interactions", json={
            "user_id": "alice", "session_id": "s-old", "created_at": long_ago,
            "query": "Acme renewal discount and term", "summary": ACME["summary"]}).json()
        new = client.post("/v1/interactions", json={
            "user_id": "alice", "session_id": "s-now",
            "query": "Acme renewal: who signs?", "summary": "Jane Porter signs."}).json()
        ask = {"query": "Acme renewal discount and term", "user_id": "alice"}
        fresh = client.post("/v1/context", json={**ask, "session_id": "s-now"}).json()
        olds = client.post("/v1/context", json={**ask, "session_id": "s-old"}).json()
        tiny = client.post("/v1/context", json={**ask, "token_budget": 20}).json()
    assert fresh["memory"][0]["interaction_id"] == new["id"]
    assert fresh["memory"][0]["same_session"] is True
    assert olds["memory"][0]["interaction_id"] == old["id"]
    assert tiny["token_count"] <= 20
    assert sum(m["tokens"] for m in tiny["memory"]) <= 20 * 0.25


def test_list_interactions_by_user_session_entity_paged(
        api: tuple[LiveServer, dict[str, str]]) -> None:
    server, k = api
    base = datetime(2026, 11, 1, tzinfo=UTC)
    with server.client(k["agent"]) as client:
        for i in range(5):
            assert client.post("/v1/interactions", json={
                "user_id": "alice", "session_id": "s-a" if i < 3 else "s-b",
                "query": f"question {i}", "created_at": (base + timedelta(hours=i)).isoformat(),
                "entities": ["deal:D-101"] if i % 2 == 0 else []}).status_code == 201
        first = client.get("/v1/interactions", params={"user_id": "alice", "limit": 2}).json()
        second = client.get("/v1/interactions", params={
            "user_id": "alice", "limit": 2, "cursor": first["next_cursor"]}).json()
        third = client.get("/v1/interactions", params={
            "user_id": "alice", "limit": 2, "cursor": second["next_cursor"]}).json()
        session = client.get("/v1/interactions", params={"session_id": "s-b"}).json()
        entity = client.get("/v1/interactions", params={"entity": "deal:D-101"}).json()
        nobody = client.get("/v1/interactions", params={"user_id": "bob"}).json()
        bad_cursor = client.get("/v1/interactions", params={"user_id": "a", "cursor": "zz"})
        no_filter = client.get("/v1/interactions")
    with server.client(k["analyst"]) as client:  # analysts read named users only if bound
        assert client.get("/v1/interactions", params={"user_id": "alice"}).status_code == 403
    pages = [i["query"] for p in (first, second, third) for i in p["items"]]
    assert pages == [f"question {i}" for i in (4, 3, 2, 1, 0)]
    assert third["next_cursor"] is None
    assert [i["query"] for i in session["items"]] == ["question 4", "question 3"]
    assert [i["query"] for i in entity["items"]] == ["question 4", "question 2", "question 0"]
    assert entity["items"][0]["entities"] == ["deal:D-101"]
    assert nobody == {"items": [], "next_cursor": None}
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["error"]["details"][0]["field"] == "cursor"
    assert no_filter.status_code == 422


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "q"}, "user_id"),
    ({"user_id": "alice"}, "query"),
    ({"user_id": "alice", "query": "   "}, "query"),
    ({"user_id": "al ice", "query": "q"}, "user_id"),
    ({"user_id": "alice", "query": "q", "entities": ["no-colon"]}, "entities.0"),
    ({"user_id": "alice", "query": "q", "entities": ["deal:1", 5]}, "entities.1"),
    ({"user_id": "alice", "query": "q", "created_at": "2026-01-01T00:00:00"}, "created_at"),
    ({"user_id": "alice", "query": "q", "created_at": "2999-01-01T00:00:00Z"}, "created_at"),
    ({"user_id": "alice", "query": "q", "summary": "x" * 8001}, "summary"),
    ({"user_id": "alice", "query": "q", "outcome": ""}, "outcome"),
    ({"user_id": "alice", "query": "q", "session_id": 7}, "session_id"),
    ({"user_id": "alice", "query": "q", "surprise": 1}, "surprise"),
])
def test_malformed_interactions_are_422_naming_the_field_and_store_nothing(
        api: tuple[LiveServer, dict[str, str]], mem_runtime: Runtime,
        body: dict[str, object], field: str) -> None:
    server, k = api
    with server.client(k["agent"]) as client:
        resp = client.post("/v1/interactions", json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in [d["field"] for d in error["details"]]
    assert _count(mem_runtime, InteractionRow) == 0
    assert _count(mem_runtime, InteractionEntity) == 0
    assert mem_runtime.memory_store.count() == 0


def test_feedback_is_checked_against_the_served_bundle(
        api: tuple[LiveServer, dict[str, str]], mem_runtime: Runtime) -> None:
    server, k = api
    with server.client(k["agent"]) as client:
        bundle = client.post("/v1/context", json={"query": "Acme renewal",
                                                  "user_id": "alice"}).json()
        item = bundle["items"][0]["id"]
        _served(mem_runtime, bundle["bundle_id"])
        mine = client.post("/v1/interactions", json={"user_id": "alice", "query": "Acme?",
                                                     "bundle_id": bundle["bundle_id"]}).json()
        theirs = client.post("/v1/interactions", json={"user_id": "bob", "query": "x"}).json()
        ok = client.post("/v1/feedback", json={
            "bundle_id": bundle["bundle_id"], "rating": 4, "used_item_ids": [item],
            "comment": "the deal stage was what I needed", "interaction_id": mine["id"]})
        unknown_bundle = client.post("/v1/feedback", json={"bundle_id": "nope", "rating": 3})
        foreign_item = client.post("/v1/feedback", json={
            "bundle_id": bundle["bundle_id"], "rating": 3, "used_item_ids": [item, "other"]})
        foreign_interaction = client.post("/v1/feedback", json={
            "bundle_id": bundle["bundle_id"], "rating": 3, "interaction_id": theirs["id"]})
        bad_rating = client.post("/v1/feedback", json={"bundle_id": bundle["bundle_id"],
                                                       "rating": 9})
    assert ok.status_code == 201, ok.text
    assert ok.json()["user_id"] == "alice" and ok.json()["used_item_ids"] == [item]
    assert unknown_bundle.status_code == 404
    assert unknown_bundle.json()["error"]["details"][0]["field"] == "bundle_id"
    assert foreign_item.status_code == 422
    assert foreign_item.json()["error"]["details"][0]["field"] == "used_item_ids.1"
    assert foreign_interaction.status_code == 422
    assert foreign_interaction.json()["error"]["details"][0]["field"] == "interaction_id"
    assert bad_rating.status_code == 422
    assert bad_rating.json()["error"]["details"][0]["field"] == "rating"
    assert _count(mem_runtime, FeedbackRow) == 1


def test_forgetting_a_user_removes_every_trace(
        api: tuple[LiveServer, dict[str, str]], mem_runtime: Runtime) -> None:
    server, k = api
    with server.client(k["agent"]) as client:
        for i in range(3):
            client.post("/v1/interactions", json={"user_id": "alice", "session_id": "s",
                                                  "entities": ["deal:D-101"], **ACME,
                                                  "query": f"{ACME['query']} ({i})"})
        client.post("/v1/interactions", json={"user_id": "bob", **ACME})
        bundle = client.post("/v1/context", json={"query": "Acme renewal",
                                                  "user_id": "alice"}).json()
        _served(mem_runtime, bundle["bundle_id"])
        assert client.post("/v1/feedback", json={"bundle_id": bundle["bundle_id"],
                                                 "rating": 5}).status_code == 201
        assert client.delete("/v1/users/alice/memory").status_code == 403
    store = mem_runtime.memory_store
    assert store.count(memory_source("alice")) == 3
    with server.client(k["admin"]) as client:
        resp = client.delete("/v1/users/alice/memory")
        again = client.delete("/v1/users/alice/memory")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": "alice", "interactions": 3, "vectors": 3,
                           "feedback": 1, "bundles": 1}
    assert again.json()["interactions"] == 0
    assert store.count(memory_source("alice")) == 0
    assert _count(mem_runtime, InteractionRow, user_id="alice") == 0
    assert _count(mem_runtime, InteractionEntity) == 0  # bob's had no entities
    assert _count(mem_runtime, FeedbackRow, user_id="alice") == 0
    assert _count(mem_runtime, BundleServed, user_id="alice") == 0
    with server.client(k["agent"]) as client:
        after = client.post("/v1/context", json={"query": "Acme renewal discount",
                                                 "user_id": "alice"}).json()
        listed = client.get("/v1/interactions", params={"user_id": "alice"}).json()
    assert after["memory"] == [] and listed["items"] == []
    # Bob is untouched.
    assert _count(mem_runtime, InteractionRow, user_id="bob") == 1
    assert store.count(memory_source("bob")) == 1


def test_roles(api: tuple[LiveServer, dict[str, str]]) -> None:
    server, k = api
    with server.client(k["analyst"]) as client:
        assert client.post("/v1/interactions", json={"user_id": "a", "query": "q"}
                           ).status_code == 403
        assert client.post("/v1/feedback", json={"bundle_id": "b", "rating": 1}
                           ).status_code == 403
        assert client.delete("/v1/users/a/memory").status_code == 403
    with server.client() as client:
        assert client.get("/v1/interactions", params={"user_id": "a"}).status_code == 401
