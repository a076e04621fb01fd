"""Memory under the same limits as items, on both store adapters: an interaction keeps the
scope of the key that recorded it, and recall and listing return only what the reader's
binding and scope allow, inside the SQL query and the engine filter.

Reproduces: "Any agent key reads any user's interactions (by user_id, session_id and
entity); a key scoped to sources [docs], kinds [document] receives alice's memory[]
(summaries of CRM and mail conversations) inside /v1/context."
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from contextd.core.store import SearchQuery
from contextd.memory.interactions import (
    NewInteraction,
    list_interactions,
    memory_scope,
    record_interaction,
)
from tests.security.conftest import Api, key

CRM_SUMMARY = "CANARY-MEMORY-CRM Globex asked for a 37 percent discount by mail"
DOC_SUMMARY = "Pointed alice to the travel policy page"


def _seed(api: Api) -> dict[str, str]:
    """Alice's conversations: one through an unscoped key (CRM and mail), one through a
    docs-only key; bob's through an unscoped key, in the same session id."""
    full = key(api.runtime, "agent")
    docs = key(api.runtime, "agent", user_ids=["alice"], sources=["docs"], kinds=["document"])
    for token, body in [
        (full, {"query": "What did Globex ask for in the renewal?", "summary": CRM_SUMMARY,
                "user_id": "alice", "session_id": "shared", "entities": ["deal:D-1"]}),
        (docs, {"query": "What is the travel policy for flights?", "summary": DOC_SUMMARY,
                "session_id": "shared", "entities": ["deal:D-1"]}),
        (full, {"query": "bob's salary question", "summary": "CANARY-BOB-MEMORY",
                "user_id": "bob", "session_id": "shared", "entities": ["deal:D-1"]}),
    ]:
        made = api.call("POST", "/v1/interactions", token, json=body)
        assert made.status_code == 201, made.text
    return {"full": full, "docs": docs}


@pytest.mark.parametrize("store", ["edge", "server"])
def test_scoped_key_gets_no_crm_memory_in_context(make_api: Callable[..., Api],
                                                  store: str) -> None:
    api = make_api(store=store, memory_min_relevance=-1.0)
    keys = _seed(api)
    query = {"query": "What did Globex ask for in the renewal?", "session_id": "shared"}
    scoped = api.call("POST", "/v1/context", keys["docs"], json=query)
    assert scoped.status_code == 200, scoped.text
    assert scoped.json()["memory_status"] == "ok"
    summaries = [m["summary"] for m in scoped.json()["memory"]]
    assert summaries == [DOC_SUMMARY]
    assert "CANARY" not in scoped.text
    full = api.call("POST", "/v1/context", keys["full"], json={**query, "user_id": "alice"})
    assert {m["summary"] for m in full.json()["memory"]} == {CRM_SUMMARY, DOC_SUMMARY}
    # request filters narrow memory like items: a CRM-only request recalls no doc memory
    crm_only = api.call("POST", "/v1/context", keys["full"],
                        json={**query, "user_id": "alice", "kinds": ["crm"]})
    assert crm_only.json()["memory"] == []


@pytest.mark.parametrize("params", [{"user_id": "alice"}, {"session_id": "shared"},
                                    {"entity": "deal:D-1"}])
def test_listing_returns_only_the_readers_user_and_scope(api: Api,
                                                        params: dict[str, str]) -> None:
    keys = _seed(api)
    page = api.call("GET", "/v1/interactions", keys["docs"], params=params)
    assert page.status_code == 200, page.text
    assert [i["summary"] for i in page.json()["items"]] == [DOC_SUMMARY]
    assert page.json()["items"][0]["sources"] == ["docs"]
    assert page.json()["items"][0]["kinds"] == ["document"]
    assert "CANARY" not in page.text
    admin = key(api.runtime, "admin")
    everything = api.call("GET", "/v1/interactions", admin,
                          params={k: v for k, v in params.items() if k != "user_id"}
                          or params)
    assert len(everything.json()["items"]) == (2 if "user_id" in params else 3)


def test_scope_is_in_the_sql_query_and_the_engine_filter(api: Api) -> None:
    """The limit is part of the queries themselves: the engine returns no out-of-scope
    point at all, and a page of the SQL listing is full with in-scope rows only."""
    runtime = api.runtime
    crm = frozenset({"crm"})
    for n in range(6):
        record_interaction(runtime.memory_engine, runtime.memory_store, runtime.dense,
                           runtime.sparse, NewInteraction(
                               user_id="dana", query=f"renewal call {n}",
                               summary="CANARY-CRM", sources=crm, kinds=frozenset({"crm"}),
                               created_at=datetime(2026, 11, 2, tzinfo=UTC)))
    kept = record_interaction(runtime.memory_engine, runtime.memory_store, runtime.dense,
                              runtime.sparse, NewInteraction(
                                  user_id="dana", query="renewal call docs", summary="ok",
                                  sources=frozenset({"docs"}),
                                  created_at=datetime(2026, 11, 1, tzinfo=UTC)))
    docs = frozenset({"docs"})
    vector = runtime.dense.encode_query("renewal call").tolist()
    hits = runtime.memory_store.search(SearchQuery(
        scope=memory_scope("dana", sources=docs, kinds=None), limit=50, dense=vector,
        mode="dense"))
    assert [h.id for h in hits] == [kept.id]
    both = runtime.memory_store.search(SearchQuery(
        scope=memory_scope("dana", sources=docs | crm, kinds=None), limit=50, dense=vector,
        mode="dense"))
    assert len(both) == 7
    dana = frozenset({"dana"})
    page = list_interactions(runtime.memory_engine, user_ids=dana, limit=1, sources=docs)
    assert [i.id for i in page.items] == [kept.id] and page.next_cursor is None
    # kinds: the docs interaction was recorded without a kinds limit ("*"), so a reader
    # narrowed to documents does not see it
    assert list_interactions(runtime.memory_engine, user_ids=dana, sources=docs,
                             kinds=frozenset({"document"})).items == []
