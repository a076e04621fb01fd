"""GET /v1/sources and GET /v1/sources/{source}/documents/{source_id}: the caller's scope
(key policy and user ACL) applied inside the engine on both store adapters; unknown
sources in POST /v1/context are a 422 naming the valid ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from tests.agents.world import CORPUS, RESTRICTED, load_world
from tests.conftest import LiveServer
from tests.factories import keys, record


@pytest.fixture(params=["edge", "server"])
def server(request: pytest.FixtureRequest,
           make_runtime: Callable[..., Runtime]) -> Iterator[LiveServer]:
    runtime = make_runtime(store=request.param)
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_sources_list_only_what_the_user_sees_with_counts_and_freshness(
        server: LiveServer) -> None:
    k = keys(server.runtime.engine)
    with server.client(k["agent"]) as client:
        ana = client.get("/v1/sources", params={"user_id": "ana"}).json()
        bob = client.get("/v1/sources", params={"user_id": "bob"}).json()
    assert {s["name"]: s["items"] for s in ana["sources"]} == {"crm": 1, "hr": 2, "wiki": 1}
    assert {s["name"]: s["items"] for s in bob["sources"]} == {"hr": 1, "wiki": 1}
    crm = next(s for s in ana["sources"] if s["name"] == "crm")
    assert crm["kinds"] == ["crm"] and crm["state"] == "unscheduled"
    assert crm["connector"] is False and crm["last_success_at"] is None


def test_a_document_is_read_whole_within_scope_and_404_outside(server: LiveServer) -> None:
    runtime = server.runtime
    long_text = " ".join(f"Sentence number {i} of the handbook says something new." for i in
                         range(200))
    runtime.ingestor.ingest([record("handbook.md", long_text, source="wiki",
                                    title="Handbook")])
    _, hr_only = create_key(runtime.engine, name="hr-only", role="agent",
                            policy=KeyPolicy(sources=frozenset({"hr"})))
    k = keys(runtime.engine)
    with server.client(k["agent"]) as client:
        doc = client.get("/v1/sources/wiki/documents/handbook.md", params={"user_id": "bob"})
        assert doc.status_code == 200, doc.text
        body = doc.json()
        assert body["chunks"] > 1 and body["text"] == long_text  # chunks joined, no overlap
        assert body["citation"].startswith("Handbook (")
        for source, source_id in RESTRICTED:
            hidden = client.get(f"/v1/sources/{source}/documents/{source_id}",
                                params={"user_id": "bob"})
            missing = client.get(f"/v1/sources/{source}/documents/nope.md",
                                 params={"user_id": "bob"})
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["error"]["code"] == "not_found"
        assert client.get("/v1/sources/hr/documents/salaries.md",
                          params={"user_id": "ana"}).status_code == 200
    with server.client(hr_only) as client:
        assert client.get("/v1/sources/wiki/documents/wiki.md",
                          params={"user_id": "ana"}).status_code == 404
        listed = client.get("/v1/sources", params={"user_id": "ana"}).json()["sources"]
        assert [s["name"] for s in listed] == ["hr"]


def test_unknown_sources_are_422_with_the_valid_values(server: LiveServer) -> None:
    k = keys(server.runtime.engine)
    with server.client(k["agent"]) as client:
        resp = client.post("/v1/context", json={"query": "leave", "user_id": "ana",
                                                "sources": ["hr", "wikki"]})
        assert resp.status_code == 422
        error = resp.json()["error"]
        assert "did you mean 'wiki'" in error["message"]
        assert error["details"][0]["valid"] == sorted({r.source for r in CORPUS})
        resp = client.post("/v1/context", json={"query": "leave", "user_id": "ana",
                                                "kinds": ["memo"]})
        assert resp.status_code == 422 and "document" in resp.text
        ok = client.post("/v1/context", json={"query": "leave", "user_id": "ana",
                                              "sources": ["hr"], "min_relevance": 0})
        assert ok.status_code == 200 and {i["source"] for i in ok.json()["items"]} == {"hr"}
