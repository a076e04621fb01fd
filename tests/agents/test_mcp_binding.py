"""A key bound to a user through MCP: its user is implied, and no tool reaches another
user's context, memory or interactions; the refusals are the HTTP routes' own (403)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from tests.agents.world import load_world, mcp_session, run, structured, text_of
from tests.conftest import LiveServer
from tests.factories import keys


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_a_bound_key_reads_only_its_users_context_and_memory(server: LiveServer,
                                                             runtime: Runtime) -> None:
    unbound = keys(runtime.engine)["agent"]
    _, ana_only = create_key(runtime.engine, name="ana-bot", role="agent",
                             policy=KeyPolicy(user_ids=frozenset({"ana"})))

    async def go() -> None:
        async with mcp_session(f"{server.base_url}/mcp", unbound) as session:
            bob_bundle = structured(await session.call_tool(
                "get_context", {"query": "office wifi", "user_id": "bob"}))
            structured(await session.call_tool("record_interaction", {
                "query": "what is the wifi password policy?", "summary": "bob's secret "
                "question about wifi", "user_id": "bob", "session_id": "bob-s1"}))
        async with mcp_session(f"{server.base_url}/mcp", ana_only) as session:
            # The user is implied: ana's restricted documents are hers to read.
            mine = structured(await session.call_tool(
                "get_context", {"query": "salary bands for engineers"}))
            assert mine["user_id"] == "ana"
            assert ("hr", "salaries.md") in {(i["source"], i["source_id"])
                                             for i in mine["items"]}
            assert all("bob's secret" not in m["summary"] for m in mine["memory"])
            # Every tool refuses another user with the route's 403.
            for tool, args in (
                    ("get_context", {"query": "wifi password", "user_id": "bob"}),
                    ("get_context", {"query": "wifi", "user_id": "bob",
                                     "session_id": "bob-s1"}),
                    ("list_sources", {"user_id": "bob"}),
                    ("read_source", {"citation": "wiki:wiki.md", "user_id": "bob"}),
                    ("record_interaction", {"query": "q", "user_id": "bob"})):
                result = await session.call_tool(tool, args)
                assert result.is_error and "403" in text_of(result), (tool, text_of(result))
            # bob's bundle cannot be rated by ana's key (as if it did not exist).
            rated = await session.call_tool("give_feedback", {
                "bundle_id": bob_bundle["bundle_id"], "rating": 1})
            assert rated.is_error and "404" in text_of(rated)
            saved = structured(await session.call_tool("record_interaction", {
                "query": "leave?", "summary": "sixteen weeks"}))
            assert saved["user_id"] == "ana"
            listed = structured(await session.call_tool("list_sources", {}))
            assert listed["user_id"] == "ana"

    run(go)
