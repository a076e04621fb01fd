"""A frozen PostgreSQL (connections open, nothing answered) costs seconds, not minutes.

The database sits behind a TCP proxy that is paused: every socket stays open and no byte
is forwarded, which is what a stopped server looks like to its clients. The shared server
itself is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups
from tests.conftest import LiveServer
from tests.factories import keys
from tests.memory.conftest import deal
from tests.memory.proxy import TcpProxy

LIMIT = 10.0  # seconds any answer may take while the database is frozen


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.up()
    yield proxy
    proxy.resume()
    proxy.down()


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def test_a_frozen_database_answers_within_seconds_and_recovers(
        make_runtime: Callable[..., Runtime], pg_url: str, proxy: TcpProxy) -> None:
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    runtime = make_runtime(database_url=proxied, database_timeout_seconds=2.0,
                           database_retry_seconds=2.0, db_outage_grace_seconds=60)
    runtime.ingestor.ingest([deal("negotiation", datetime(2026, 11, 10, tzinfo=UTC))])
    set_user_groups(runtime.engine, user_id="alice", groups=["sales"])
    agent = keys(runtime.engine)["agent"]
    ask = {"query": "Acme renewal stage", "user_id": "alice"}
    with LiveServer(runtime) as server, server.client(agent) as client, \
            server.client() as anon:
        client.timeout = httpx.Timeout(60)
        assert client.post("/v1/context", json=ask).status_code == 200
        assert client.post("/v1/interactions", json={
            "user_id": "alice", "query": "Acme?", "summary": "12%"}).status_code == 201
        proxy.pause()
        try:
            answers = {
                "context": timed(lambda: client.post("/v1/context", json=ask)),
                "context again": timed(lambda: client.post("/v1/context", json=ask)),
                "readyz": timed(lambda: anon.get("/readyz")),
                "interactions": timed(lambda: client.get("/v1/interactions",
                                                         params={"user_id": "alice"})),
                "record": timed(lambda: client.post("/v1/interactions", json={
                    "user_id": "alice", "query": "lost?"})),
            }
        finally:
            proxy.resume()
        for name, (resp, seconds) in answers.items():
            assert seconds < LIMIT, (name, seconds)
            assert resp.status_code in (200, 503), (name, resp.text)
        context, _ = answers["context"]
        if context.status_code == 200:
            body = context.json()
            assert body["memory_status"] == "unavailable" and body["items"]
        else:
            assert context.json()["error"]["code"] == "unavailable"
        assert answers["readyz"][0].status_code == 503
        assert answers["readyz"][0].json()["checks"]["database"] == "unavailable"
        assert answers["interactions"][0].status_code == 503
        assert answers["record"][0].status_code == 503
        deadline = time.monotonic() + 30  # back after the fail-fast window
        while True:
            resp = client.post("/v1/context", json=ask)
            if resp.status_code == 200 and resp.json()["memory_status"] == "ok":
                break
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.5)
        assert anon.get("/readyz").status_code == 200
