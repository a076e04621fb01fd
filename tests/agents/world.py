"""A small company for the agent-surface tests: documents with ACLs, users in groups,
keys of every role, and helpers that drive the MCP server with the official client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups
from tests.factories import record

T = TypeVar("T")

CORPUS = [
    record("leave.md", "Parental leave is sixteen weeks at full pay.", source="hr",
           title="Leave policy", acl=("public",)),
    record("salaries.md", "Salary bands for engineers range from level one to level six. "
           "Level six engineers earn the top band.", source="hr", acl=("group:hr",),
           title="Salary bands"),
    record("acme.json", "Acme Corp renewal is due in March; the champion is Dana.",
           source="crm", kind="crm", acl=("group:sales",), title="Acme account"),
    record("wiki.md", "The office wifi password rotates every month; ask IT for it.",
           source="wiki", acl=("public",), title="Office wifi"),
]
RESTRICTED = {("hr", "salaries.md"), ("crm", "acme.json")}


def load_world(runtime: Runtime) -> None:
    runtime.ingestor.ingest(CORPUS)
    set_user_groups(runtime.engine, user_id="ana", groups=["sales", "hr"])
    set_user_groups(runtime.engine, user_id="bob", groups=[])


@asynccontextmanager
async def mcp_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    """An initialized official-SDK session over streamable HTTP with ``key`` as bearer."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def http_context(client: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/context", json=body)
    assert resp.status_code == 200, resp.text
    return dict(json.loads(resp.text))





def ranked(bundle: dict[str, Any]) -> list[tuple[float, str]]:
    """Items as (score to 4 places, id), best first, ties by id: two answers to the same
    request compare equal even when the engine orders exact ties differently."""
    return sorted((-round(float(i["score"]), 4), i["id"]) for i in bundle["items"])
