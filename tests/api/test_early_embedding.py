"""The query embeds while the key is checked, but only for a key admitted lately.

Over real HTTP: the order of model calls and key checks is recorded by wrapping the
encoder's ``submit_query`` and the authentication the API calls.
"""

from __future__ import annotations

from typing import Any

import pytest

from contextd.api import deps
from contextd.api.admitted import RecentlyAdmitted
from contextd.runtime import Runtime
from contextd.state.keys import revoke_key
from tests.conftest import LiveServer
from tests.factories import keys, record

BODY = {"query": "how fast are support tickets answered?", "user_id": "alice"}


@pytest.fixture
def events(runtime: Runtime, live_server: LiveServer,
           monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runtime.ingestor.ingest([record("handbook.md", "Support tickets are answered within four "
                                    "business hours.", title="Support handbook")])
    seen: list[str] = []
    submit = runtime.dense.submit_query  # type: ignore[attr-defined]
    authenticate = deps.authenticate

    def recording_submit(text: str) -> Any:
        seen.append(f"embed:{text}")
        return submit(text)

    def recording_authenticate(*args: Any, **kwargs: Any) -> Any:
        seen.append("auth")
        return authenticate(*args, **kwargs)

    monkeypatch.setattr(runtime.dense, "submit_query", recording_submit)
    monkeypatch.setattr(deps, "authenticate", recording_authenticate)
    return seen


def _post(server: LiveServer, key: str | None, body: dict[str, Any] = BODY) -> int:
    with server.client(key) as client:
        return client.post("/v1/context", json=body).status_code


def test_an_admitted_key_gets_its_query_embedded_during_the_key_check(
        events: list[str], live_server: LiveServer, runtime: Runtime) -> None:
    agent = keys(runtime.engine)["agent"]
    embed = f"embed:{BODY['query']}"
    with live_server.client(agent) as client:
        first = client.post("/v1/context", json=BODY)
        assert events == ["auth", embed]  # not admitted yet: checked first
        events.clear()
        second = client.post("/v1/context", json=BODY)
        assert events == [embed, "auth"]  # started before the check, and not embedded twice
    assert first.status_code == second.status_code == 200
    ids = [[i["id"] for i in r.json()["items"]] for r in (first, second)]
    assert ids[0] == ids[1] and ids[0]
    assert second.json()["stats"]["stages_ms"]["embed"] > 0


def test_no_model_time_for_a_caller_without_a_valid_key(
        events: list[str], live_server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    for key in (None, "nonsense", "ctxd_deadbeef_secret", k["agent"] + "x"):
        assert _post(live_server, key) == 401
        assert _post(live_server, key) == 401
    for _ in range(2):  # admitted, but its role may not call this route
        assert _post(live_server, k["analyst"]) == 403
    assert not [e for e in events if e.startswith("embed")], events

    assert _post(live_server, k["agent"]) == 200
    revoke_key(runtime.engine, key_id=k["agent"].split("_")[1])
    events.clear()
    assert _post(live_server, k["agent"]) == 401  # admitted before: one early start at most
    assert _post(live_server, k["agent"]) == 401  # then forgotten
    assert [e.startswith("embed") for e in events] == [True, False, False], events


@pytest.mark.parametrize(("body", "status"), [
    ({**BODY, "query": "   "}, 422),
    ({**BODY, "query": 7}, 422),
    ({**BODY, "query": "x" * 20_000}, 422),
    ("not an object", 422),
])
def test_a_body_that_cannot_be_served_starts_no_model_time(
        events: list[str], live_server: LiveServer, runtime: Runtime,
        body: Any, status: int) -> None:
    agent = keys(runtime.engine)["agent"]
    assert _post(live_server, agent) == 200
    events.clear()
    assert _post(live_server, agent, body) == status
    assert not [e for e in events if e.startswith("embed")], events


def test_admitted_tokens_expire_are_bounded_and_hold_no_token() -> None:
    admitted = RecentlyAdmitted(ttl_seconds=60, max_entries=2)
    admitted.note("ctxd_a_secret", "agent")
    assert admitted.role_of("ctxd_a_secret") == "agent"
    assert admitted.role_of("ctxd_a_secreT") is None
    admitted.forget("ctxd_a_secret")
    assert admitted.role_of("ctxd_a_secret") is None
    for token in ("ctxd_b_1", "ctxd_c_2", "ctxd_d_3"):
        admitted.note(token, "agent")
    assert [admitted.role_of(t) for t in ("ctxd_b_1", "ctxd_c_2", "ctxd_d_3")] == [
        None, "agent", "agent"]
    assert not any(b"ctxd" in digest for digest in admitted._entries)
    expired = RecentlyAdmitted(ttl_seconds=-1)
    expired.note("ctxd_e_4", "agent")
    assert expired.role_of("ctxd_e_4") is None


def test_a_streamed_body_is_served_without_an_early_start(
        events: list[str], live_server: LiveServer, runtime: Runtime) -> None:
    """A chunked body declares no length: the middleware leaves it to the app untouched."""
    import json

    agent = keys(runtime.engine)["agent"]
    assert _post(live_server, agent) == 200  # admitted
    events.clear()
    payload = json.dumps(BODY).encode()

    def chunks() -> Any:
        yield payload[:10]
        yield payload[10:]

    with live_server.client(agent) as client:
        response = client.post("/v1/context", content=chunks(),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert events == ["auth", f"embed:{BODY['query']}"]  # checked first, embedded once


def test_the_middleware_hands_the_body_on_unchanged_in_as_many_parts() -> None:
    """Pure ASGI: an admitted token's body in several messages reaches the app as sent,
    with the embedding started; a body longer than declared starts nothing."""
    import asyncio
    import json
    from types import SimpleNamespace

    from contextd.api.early import EarlyEmbeddingMiddleware, started_embedding

    submitted: list[str] = []

    class Encoder:
        def submit_query(self, text: str) -> Any:
            from concurrent.futures import Future

            submitted.append(text)
            return Future()

    admitted = RecentlyAdmitted()
    admitted.note("ctxd_k_s", "agent")
    runtime = SimpleNamespace(dense=Encoder(), settings=SimpleNamespace(max_query_chars=100))
    app_state = SimpleNamespace(admitted=admitted, runtime=runtime)
    seen: dict[str, Any] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen["parts"] = parts
        seen["early"] = started_embedding(scope)

    def run(body: bytes, parts: list[bytes], declared: int) -> None:
        messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                    for i, p in enumerate(parts)]

        async def receive() -> Any:
            return messages.pop(0)

        scope = {"type": "http", "method": "POST", "path": "/v1/context",
                 "app": SimpleNamespace(state=app_state),
                 "headers": [(b"authorization", b"Bearer ctxd_k_s"),
                             (b"content-length", str(declared).encode())]}
        middleware = EarlyEmbeddingMiddleware(inner, roles={"agent"}, max_bytes=10_000)
        asyncio.run(middleware(scope, receive, lambda message: None))

    body = json.dumps({"query": "travel per diem", "user_id": "u"}).encode()
    run(body, [body[:7], body[7:20], body[20:]], len(body))
    assert seen["parts"] == [body[:7], body[7:20], body[20:]]
    assert submitted == ["travel per diem"] and seen["early"].text == "travel per diem"
    assert seen["early"].vector.cancelled()  # unused by this app: dropped

    submitted.clear()
    run(body, [body[:7], body[7:]], 7)  # more than declared: left to the body limit
    assert seen["parts"] == [body[:7], body[7:]] and seen["early"] is None and not submitted
