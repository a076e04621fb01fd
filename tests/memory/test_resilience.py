"""PostgreSQL at scale: concurrent writers lose nothing, and a database outage degrades the
bundle to items only, saying so, instead of failing it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import Session, func, select

from contextd.memory.interactions import memory_source
from contextd.runtime import Runtime
from contextd.state.keys import create_key, revoke_key
from contextd.state.principals import set_user_groups
from contextd.state.tables import InteractionRow
from tests.conftest import LiveServer
from tests.factories import keys
from tests.memory.conftest import deal
from tests.memory.proxy import TcpProxy

WRITERS = 50


def test_50_concurrent_writers_on_postgresql_lose_no_interaction(
        make_runtime: Callable[..., Runtime], pg_url: str) -> None:
    runtime = make_runtime(database_url=pg_url)
    agent = keys(runtime.engine)["agent"]
    start = threading.Barrier(WRITERS)
    statuses: list[int] = []
    ids: list[str] = []
    lock = threading.Lock()

    def write(n: int, server: LiveServer) -> None:
        # Generous timeout: 50 embeddings queue on one model thread of a shared 2-core box.
        with httpx.Client(base_url=server.base_url, timeout=300,
                          headers={"Authorization": f"Bearer {agent}"}) as client:
            start.wait()
            resp = client.post("/v1/interactions", json={
                "user_id": f"user{n % 5}", "session_id": f"s{n % 7}",
                "query": f"question number {n} about the Acme renewal",
                "summary": f"answer {n}", "entities": [f"deal:D-{n}"]})
        with lock:
            statuses.append(resp.status_code)
            if resp.status_code == 201:
                ids.append(resp.json()["id"])

    with LiveServer(runtime) as server:
        threads = [threading.Thread(target=write, args=(n, server)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    assert statuses == [201] * WRITERS
    assert len(set(ids)) == WRITERS
    with Session(runtime.memory_engine) as session:
        stored = set(session.exec(select(InteractionRow.id)))
    assert stored == set(ids)
    assert runtime.memory_store.count() == WRITERS
    assert sum(runtime.memory_store.count(memory_source(f"user{u}")) for u in range(5)) == WRITERS


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.up()
    yield proxy
    proxy.down()


def test_database_outage_serves_items_and_marks_memory_unavailable(
        make_runtime: Callable[..., Runtime], pg_url: str, proxy: TcpProxy) -> None:
    # Interactions and facts on PostgreSQL behind the proxy; keys and the directory stay up.
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    runtime = make_runtime(memory_database_url=proxied)
    runtime.ingestor.ingest([deal("negotiation", datetime(2026, 11, 10, tzinfo=UTC))])
    set_user_groups(runtime.engine, user_id="alice", groups=["sales"])
    agent = keys(runtime.engine)["agent"]
    ask = {"query": "Acme renewal discount and term", "user_id": "alice"}

    def context(client: httpx.Client) -> dict[str, object]:
        resp = client.post("/v1/context", json=ask)
        assert resp.status_code == 200, resp.text
        body: dict[str, object] = resp.json()
        return body

    with LiveServer(runtime) as server, server.client(agent) as client:
        saved = client.post("/v1/interactions", json={
            "user_id": "alice", "query": "Acme renewal: discount and term?",
            "summary": "12% for a 3-year term."})
        assert saved.status_code == 201
        before = context(client)
        proxy.down()
        during = context(client)
        write = client.post("/v1/interactions", json={"user_id": "alice", "query": "lost?"})
        listing = client.get("/v1/interactions", params={"user_id": "alice"})
        proxy.up()
        after = context(client)
    assert before["memory_status"] == "ok" and before["memory"] and before["facts"]
    assert during["memory_status"] == "unavailable"
    assert [w["code"] for w in during["warnings"]] == ["memory_unavailable"]
    assert not any(w["code"] == "memory_unavailable" for w in after["warnings"])
    assert during["items"] and during["memory"] == [] and during["facts"] == []
    assert write.status_code == 503 and write.json()["error"]["code"] == "unavailable"
    assert listing.status_code == 503
    assert after["memory_status"] == "ok" and after["memory"]
    # The refused write left no vector behind.
    assert runtime.memory_store.count(memory_source("alice")) == 1
    with Session(runtime.memory_engine) as session:
        assert session.exec(select(func.count()).select_from(InteractionRow)).one() == 1


def test_single_database_outage_keeps_serving_recently_seen_callers(
        make_runtime: Callable[..., Runtime], pg_url: str, proxy: TcpProxy) -> None:
    # Everything on one PostgreSQL database behind the proxy: keys, directory, memory.
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    runtime = make_runtime(database_url=proxied, db_outage_grace_seconds=60)
    runtime.ingestor.ingest([deal("negotiation", datetime(2026, 11, 10, tzinfo=UTC))])
    set_user_groups(runtime.engine, user_id="alice", groups=["sales"])
    # Key names are unique among active keys: three agents, three names.
    agent, unseen, revoked = (create_key(runtime.engine, name=f"agent-{n}", role="agent")[1]
                              for n in range(3))
    ask = {"query": "Acme renewal stage", "user_id": "alice"}
    with LiveServer(runtime) as server, server.client(agent) as client:
        before = client.post("/v1/context", json=ask)
        with server.client(revoked) as leaver:
            assert leaver.post("/v1/context", json=ask).status_code == 200
            revoke_key(runtime.engine, key_id=revoked.split("_")[1])
        proxy.down()
        during = client.post("/v1/context", json=ask)
        with server.client(unseen) as stranger:
            refused = stranger.post("/v1/context", json=ask)
        with server.client(revoked) as leaver:
            still_revoked = leaver.post("/v1/context", json=ask)
        proxy.up()
        after = client.post("/v1/context", json=ask)
    assert before.status_code == 200 and before.json()["memory_status"] == "ok"
    assert during.status_code == 200, during.text
    body = during.json()
    # The deal is visible through alice's group, read moments before the outage.
    assert body["memory_status"] == "unavailable"
    assert [i["source_id"] for i in body["items"]] == ["deal:D-101"]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
    assert still_revoked.status_code == 503  # a revocation is never undone by the outage
    assert after.status_code == 200 and after.json()["memory_status"] == "ok"
