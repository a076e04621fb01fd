"""``contextd mcp`` over stdio, driven by the official client (``stdio_client``): through a
running service's HTTP API, and, with none running, on a private copy of the data dir
that leaves the original free for ``contextd serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.runtime import Runtime
from contextd.state.keys import create_key, revoke_key
from tests.agents.world import (
    RESTRICTED,
    http_context,
    load_world,
    ranked,
    run,
    structured,
    text_of,
)
from tests.conftest import REPO, LiveServer, _free_port
from tests.factories import keys


def _env(**extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "CONTEXTD_SCHEDULER_ENABLED": "false", **extra}


@asynccontextmanager
async def stdio_session(**env: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "contextd.cli", "mcp"], env=_env(**env))
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_stdio_through_a_running_service(server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    body = {"query": "salary bands and parental leave", "user_id": "ana"}
    with server.client(k["agent"]) as client:
        expected = http_context(client, **body)

    async def go() -> None:
        async with stdio_session(CONTEXTD_API_KEY=k["agent"],
                                 CONTEXTD_URL=server.base_url) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"get_context", "read_source", "list_sources"} <= names
            bundle = structured(await session.call_tool("get_context", body))
            assert ranked(bundle) == ranked(expected)
            for query in ("salary bands level six", "Acme renewal champion"):
                bob = structured(await session.call_tool(
                    "get_context", {"query": query, "user_id": "bob", "token_budget": 4000}))
                assert not {(i["source"], i["source_id"]) for i in bob["items"]} & RESTRICTED
            refused = await session.call_tool("read_source", {"citation": "hr:salaries.md",
                                                              "user_id": "bob"})
            assert refused.is_error and "not_found" in text_of(refused)
            saved = structured(await session.call_tool("record_interaction", {
                "query": "leave?", "summary": "sixteen weeks", "user_id": "ana"}))
            assert saved["agent"] == "test-agent"

    run(go)


def test_stdio_refuses_revoked_and_wrong_role_keys_at_start(server: LiveServer,
                                                            runtime: Runtime) -> None:
    k = keys(runtime.engine)
    gone, revoked = create_key(runtime.engine, name="gone", role="agent")
    revoke_key(runtime.engine, key_id=gone.id)
    for key, words in ((revoked, "invalid or revoked"), (k["analyst"], "role 'analyst'"),
                       ("", "CONTEXTD_API_KEY")):
        done = subprocess.run([sys.executable, "-m", "contextd.cli", "mcp"], input="",
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **_env(CONTEXTD_API_KEY=key,
                                                        CONTEXTD_URL=server.base_url)})
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""  # nothing but protocol ever goes to stdout


def test_stdio_without_a_service_reads_a_private_copy(
        tmp_path: Path, encoder: SentenceTransformerEncoder) -> None:
    data = tmp_path / "data"
    runtime = Runtime(Settings(data_dir=data), dense_encoder=encoder)
    runtime.migrate()
    load_world(runtime)
    agent = keys(runtime.engine)["agent"]
    runtime.close()
    dead = f"http://127.0.0.1:{_free_port()}"

    async def go() -> None:
        async with stdio_session(CONTEXTD_API_KEY=agent, CONTEXTD_URL=dead,
                                 CONTEXTD_DATA_DIR=str(data)) as session:
            bob = structured(await session.call_tool(
                "get_context", {"query": "how long is parental leave", "user_id": "bob"}))
            got = {(i["source"], i["source_id"]) for i in bob["items"]}
            assert ("hr", "leave.md") in got and not got & RESTRICTED
            listed = structured(await session.call_tool("list_sources", {"user_id": "ana"}))
            assert {s["name"] for s in listed["sources"]} == {"crm", "hr", "wiki"}
            refused = await session.call_tool("record_interaction", {
                "query": "q", "user_id": "ana"})
            assert refused.is_error and "contextd serve" in text_of(refused)
            # The original is not locked: a service (here a runtime) can open it meanwhile.
            owner = Runtime(Settings(data_dir=data), dense_encoder=encoder)
            try:
                assert owner.store.count() == 4
            finally:
                owner.close()

    run(go)
