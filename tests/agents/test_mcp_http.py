"""The MCP server at /mcp, driven over streamable HTTP by the official ``mcp`` client
against a live uvicorn server: the same items as POST /v1/context, the caller's scope on
every tool, refusals before any tool runs, and tool errors for bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key, revoke_key
from tests.agents.world import (
    RESTRICTED,
    http_context,
    load_world,
    mcp_session,
    ranked,
    run,
    structured,
    text_of,
)
from tests.conftest import LiveServer
from tests.factories import context_rows, keys

TOOLS = {"get_context", "read_source", "list_sources", "record_interaction", "give_feedback"}


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_tools_are_listed_with_schemas_and_descriptions(server: LiveServer,
                                                        runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", agent) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.description and len(tool.description) > 60, tool.name
                assert tool.input_schema["type"] == "object"
            schema = tools["get_context"].input_schema
            assert schema["required"] == ["query"]
            kinds = schema["properties"]["kinds"]
            assert "document" in str(kinds) and "crm" in str(kinds)
            assert tools["get_context"].output_schema is not None
            assert "bundle_id" in tools["get_context"].output_schema["properties"]

    run(go)


def test_get_context_returns_the_items_of_post_context(server: LiveServer,
                                                       runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]
    body = {"query": "salary bands and parental leave", "user_id": "ana", "token_budget": 800}
    with server.client(agent) as client:
        expected = http_context(client, **body)

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", agent) as session:
            result = await session.call_tool("get_context", body)
            bundle = structured(result)
            assert ranked(bundle) == ranked(expected)
            assert {(i["source"], i["source_id"]) for i in bundle["items"]} >= RESTRICTED - {
                ("crm", "acme.json")}
            text = text_of(result)
            for item in bundle["items"]:
                assert item["citation"] in text
                assert f"ref: {item['source']}:{item['source_id']}" in text

    async def modern() -> None:
        """The SDK's mcp.Client in its default mode discovers the server and speaks the
        per-request protocol (no initialize): the same items."""
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent}"},
                                      timeout=60) as http, \
                Client(streamable_http_client(f"{server.base_url}/mcp",
                                              http_client=http)) as client:
            assert client.protocol_version == "2026-07-28"
            assert ranked(structured(await client.call_tool("get_context", body))) == ranked(
                expected)

    run(go)
    run(modern)


def test_a_restricted_user_never_receives_restricted_items_through_any_tool(
        server: LiveServer, runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", agent) as session:
            for query in ("salary bands level six", "Acme renewal champion", "leave wifi"):
                bundle = structured(await session.call_tool(
                    "get_context", {"query": query, "user_id": "bob", "token_budget": 4000}))
                got = {(i["source"], i["source_id"]) for i in bundle["items"]}
                assert not got & RESTRICTED, got
            listed = structured(await session.call_tool("list_sources", {"user_id": "bob"}))
            names = {s["name"]: s for s in listed["sources"]}
            assert "crm" not in names  # bob sees nothing of it, so it is not even named
            assert names["hr"]["items"] == 1
            for source, source_id in sorted(RESTRICTED):
                result = await session.call_tool("read_source", {
                    "citation": f"{source}:{source_id}", "user_id": "bob"})
                assert result.is_error and "404" in text_of(result), text_of(result)
            whole = structured(await session.call_tool(
                "read_source", {"citation": "hr:salaries.md", "user_id": "ana"}))
            assert "Level six engineers earn the top band." in whole["text"]

    run(go)


def test_read_source_takes_a_served_citation_and_refuses_other_scopes(
        server: LiveServer, runtime: Runtime) -> None:
    _, wiki_only = create_key(runtime.engine, name="wiki-bot", role="agent",
                              policy=KeyPolicy(sources=frozenset({"wiki"})))

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", wiki_only) as session:
            bundle = structured(await session.call_tool(
                "get_context", {"query": "wifi password", "user_id": "ana"}))
            assert {i["source"] for i in bundle["items"]} == {"wiki"}
            item = bundle["items"][0]
            doc = structured(await session.call_tool(
                "read_source", {"citation": f"{item['source']}:{item['source_id']}",
                                "user_id": "ana"}))
            assert doc["text"].startswith("The office wifi password")
            # ana may read hr, but this key may not: outside the caller's scope.
            refused = await session.call_tool("read_source", {"citation": "hr:leave.md",
                                                              "user_id": "ana"})
            assert refused.is_error and "not_found" in text_of(refused)
            bad = await session.call_tool("read_source", {"citation": "nonsense"})
            assert bad.is_error and "ref" in text_of(bad)

    run(go)


def test_unknown_source_or_kind_is_a_tool_error_listing_valid_values(
        server: LiveServer, runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", agent) as session:
            result = await session.call_tool("get_context", {
                "query": "leave", "user_id": "ana", "sources": ["wikki"]})
            assert result.is_error
            text = text_of(result)
            assert "did you mean 'wiki'" in text and "crm, hr, wiki" in text
            result = await session.call_tool("get_context", {
                "query": "leave", "user_id": "ana", "kinds": ["memo"]})
            assert result.is_error and "document" in text_of(result)
            result = await session.call_tool("give_feedback", {"bundle_id": "b", "rating": 9})
            assert result.is_error and "5" in text_of(result)

    run(go)


def test_interactions_and_feedback_go_through_the_api(server: LiveServer,
                                                     runtime: Runtime) -> None:
    k = keys(runtime.engine)

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", k["agent"]) as session:
            bundle = structured(await session.call_tool(
                "get_context", {"query": "parental leave", "user_id": "ana"}))
            saved = structured(await session.call_tool("record_interaction", {
                "query": "how long is parental leave?", "summary": "sixteen weeks",
                "user_id": "ana", "bundle_id": bundle["bundle_id"]}))
            assert saved["user_id"] == "ana" and saved["agent"] == "test-agent"
            rated = structured(await session.call_tool("give_feedback", {
                "bundle_id": bundle["bundle_id"], "rating": 5,
                "used_item_ids": [bundle["items"][0]["id"]]}))
            assert rated["rating"] == 5
            again = structured(await session.call_tool(
                "get_context", {"query": "parental leave", "user_id": "ana"}))
            assert any("sixteen weeks" in m["summary"] for m in again["memory"])

    run(go)
    with server.client(k["admin"]) as admin:
        events = admin.get("/v1/audit", params={"action": "context.request"}).json()["events"]
    assert len(events) >= 2  # tool calls are audited as the API requests they are


def test_missing_revoked_and_wrong_role_keys_are_refused_before_any_tool(
        server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    gone, revoked = create_key(runtime.engine, name="gone", role="agent")
    revoke_key(runtime.engine, key_id=gone.id)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for token, status in ((None, 401), ("ctxd_nope_nope", 401), (revoked, 401),
                              (k["analyst"], 403)):
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            resp = client.post("/mcp", json=init, headers={**accept, **auth})
            assert resp.status_code == status, (token, resp.text)
            assert resp.json()["error"]["code"] in ("unauthenticated", "forbidden")
        ok = client.post("/mcp", json=init, headers={**accept,
                                                     "Authorization": f"Bearer {k['agent']}"})
        assert ok.status_code == 200, ok.text

    async def refused(token: str | None) -> None:
        """The official client cannot even initialize: the HTTP 401/403 surfaces as an
        MCPError (inside the client's task group)."""
        try:
            async with mcp_session(f"{server.base_url}/mcp", token):
                raise AssertionError("session opened")
        except BaseException as exc:
            assert _has_mcp_error(exc), repr(exc)

    for token in (None, revoked, k["analyst"]):
        run(lambda token=token: refused(token))  # type: ignore[misc]


def _has_mcp_error(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return True
    return isinstance(exc, BaseExceptionGroup) and any(_has_mcp_error(e)
                                                       for e in exc.exceptions)



def test_get_context_is_held_to_the_keys_limits_and_recorded_like_post_context(
        server: LiveServer, runtime: Runtime) -> None:
    """The tool serves POST /v1/context's work in-process with the key the gate verified:
    it takes the same rate-limit tokens (none for initialize or tools/list), applies the
    key's limits and the body's validation, and leaves the same audit and outcome rows."""
    admin = keys(runtime.engine)["admin"]
    _, limited = create_key(runtime.engine, name="limited", role="agent", policy=KeyPolicy(
        rate_per_minute=1, burst=2, max_token_budget=500, max_request_bytes=400))

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", limited) as session:
            await session.list_tools()
            too_big = await session.call_tool("get_context", {
                "query": "leave", "user_id": "ana", "token_budget": 900})
            assert too_big.is_error and "token_budget" in text_of(too_big)
            served = structured(await session.call_tool(
                "get_context", {"query": "parental leave", "user_id": "ana"}))
            assert served["items"]
            limited_now = await session.call_tool(
                "get_context", {"query": "parental leave", "user_id": "ana"})
            assert limited_now.is_error and "429 (rate_limited)" in text_of(limited_now)

    run(go)
    with server.client(admin) as reader:
        audit = reader.get("/v1/audit", params={"actor": "limited"}).json()["events"]
    actions = sorted((e["action"], e["outcome"]) for e in audit)
    assert ("request.rate_limited", "rate_limited") in actions
    assert [e["target"] for e in audit if e["action"] == "request.rate_limited"] == [
        "/v1/context"]
    assert sorted(o for a, o in actions if a == "context.request") == ["invalid_input", "ok"]
    # One outcome row per admitted call (422 and 200); the rate-limited call is refused
    # before the route admits the key, as over HTTP.
    context_rows(runtime.engine, 2)
    time.sleep(0.3)  # room for a wrong third row to appear
    assert sorted(r.status for r in context_rows(runtime.engine, 2)) == [200, 422]


def test_a_body_over_the_keys_size_limit_and_a_forged_marker_header_are_refused(
        server: LiveServer, runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]
    _, small = create_key(runtime.engine, name="small", role="agent",
                          policy=KeyPolicy(max_request_bytes=60))

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", small) as session:
            result = await session.call_tool("get_context", {
                "query": "parental leave " * 10, "user_id": "ana"})
            assert result.is_error and "413 (payload_too_large)" in text_of(result)

    run(go)
    # The verified key travels as an object in the request's ASGI state; no header can
    # stand in for it, nor for the bearer.
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "get_context", "arguments": {"query": "salary bands", "user_id": "ana"}}}
    agent_id = agent.split("_")[1]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resp = client.post("/mcp", json=call, headers={
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": "2025-11-25", "contextd.mcp.key": agent_id,
            "X-Contextd-Verified-Key": agent_id, "Authorization": "Bearer ctxd_x_y"})
        assert resp.status_code == 401, resp.text
        ok = client.post("/mcp", json=call, headers={
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": "2025-11-25", "Authorization": f"Bearer {agent}"})
    assert ok.status_code == 200 and "result" in ok.json(), ok.text
    # Served without a second HTTP request: the outcome row carries the MCP request's id.
    request_id = ok.headers["x-request-id"]
    assert request_id in [r.request_id for r in context_rows(runtime.engine, 2)]
