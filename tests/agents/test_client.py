"""contextd.client against a live server: sync and async from the one call description,
errors as exceptions carrying the JSON error, 429 retried after Retry-After."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from contextd.client import (
    AsyncClient,
    AuthError,
    Client,
    NotFoundError,
    RateLimitError,
    ValidationError,
)
from contextd.client.transport import retry_delay
from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from tests.agents.world import RESTRICTED, load_world, run
from tests.conftest import LiveServer
from tests.factories import keys


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_sync_client_covers_agents_admins_and_analysts(server: LiveServer,
                                                       runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with Client(server.base_url, k["agent"]) as agent:
        bundle = agent.context("how long is parental leave", "bob", token_budget=500)
        assert bundle.items and not {(i.source, i.source_id) for i in bundle.items} & RESTRICTED
        assert {s.name for s in agent.sources("bob").sources} == {"hr", "wiki"}
        doc = agent.document("hr", "leave.md", "bob")
        assert doc.text.startswith("Parental leave")
        saved = agent.record_interaction("leave?", "ana", summary="sixteen weeks",
                                         bundle_id=bundle.bundle_id)
        assert agent.interactions("ana").items[0].id == saved.id
        assert agent.feedback(bundle.bundle_id, 4, [bundle.items[0].id]).rating == 4
    with Client(server.base_url, k["admin"]) as admin:
        made = admin.create_key("client-made", "agent", {"sources": ["wiki"]})
        assert made.key.startswith("ctxd_") and made.policy.sources == ["wiki"]
        assert made.id in {key.id for key in admin.list_keys()}
        admin.revoke_key(made.id)
        assert admin.connectors() == []
    with Client(server.base_url, made.key) as revoked, pytest.raises(AuthError) as info:
        revoked.context("leave", "ana")
    assert info.value.status == 401 and info.value.code == "unauthenticated"
    with Client(server.base_url, k["analyst"]) as analyst:
        assert "metrics" in analyst.quality(hours=1)
        with pytest.raises(AuthError) as info:
            analyst.context("leave", "ana")
        assert info.value.status == 403


def test_errors_carry_the_json_error(server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with Client(server.base_url, k["agent"]) as agent:
        with pytest.raises(ValidationError) as info:
            agent.context("leave", "ana", sources=["wikki"])
        assert info.value.status == 422 and info.value.code == "invalid_input"
        assert info.value.details[0]["did_you_mean"] == ["wiki"]
        assert info.value.body["error"]["message"] == info.value.message
        with pytest.raises(NotFoundError):
            agent.document("hr", "salaries.md", "bob")


def test_async_client_is_the_same_api(server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)

    async def go() -> None:
        async with AsyncClient(server.base_url, k["agent"]) as agent:
            bundle = await agent.context("Acme renewal", "ana")
            assert ("crm", "acme.json") in {(i.source, i.source_id) for i in bundle.items}
            with pytest.raises(NotFoundError):
                await agent.document("crm", "acme.json", "bob")
            page = await agent.interactions("ana")
            assert page.items == []

    run(go)


def test_429_is_retried_after_retry_after(server: LiveServer, runtime: Runtime) -> None:
    _, key = create_key(runtime.engine, name="slow", role="agent",
                        policy=KeyPolicy(rate_per_minute=60, burst=1))
    with Client(server.base_url, key, max_retries=0) as impatient:
        impatient.sources("ana")
        with pytest.raises(RateLimitError) as info:
            impatient.sources("ana")
        assert info.value.retry_after == 1 and info.value.code == "rate_limited"
    time.sleep(1.1)
    with Client(server.base_url, key) as patient:
        patient.sources("ana")
        started = time.monotonic()
        assert patient.sources("ana").user_id == "ana"  # 429, waited Retry-After, retried
        assert time.monotonic() - started >= 1.0


def test_retry_rule() -> None:
    def answer(status: int, **headers: str) -> httpx.Response:
        return httpx.Response(status, headers=headers)

    assert retry_delay(answer(429, **{"Retry-After": "2"}), 0, 3, 30) == 2
    assert retry_delay(answer(503, **{"Retry-After": "120"}), 0, 3, 30) == 30
    assert retry_delay(answer(503), 1, 3, 30) == 1.0
    assert retry_delay(answer(503), 3, 3, 30) is None
    assert retry_delay(answer(500), 0, 3, 30) is None


def test_the_client_imports_no_framework_and_no_server() -> None:
    code = ("import sys, contextd.client, contextd.adapters; "
            "heavy = [m for m in ('llama_index', 'langchain_core', 'torch', 'fastapi', "
            "'sqlalchemy', 'mcp') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
