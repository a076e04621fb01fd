"""Access limits over real HTTP (uvicorn on loopback): roles on every route, key scopes,
rotation, output and rate limits under concurrent clients, audit, redaction, and group
changes that apply on the very next request."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from contextd.api.app import api_routes, create_app
from contextd.api.routers.health import PUBLIC_PATHS
from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key, revoke_key
from contextd.state.principals import set_user_groups
from tests.conftest import LiveServer
from tests.factories import keys, record

CORPUS = [
    record("leave.md", "Parental leave is sixteen weeks at full pay.", source="hr",
           title="Leave policy", acl=("public",)),
    record("salaries.md", "Salary bands for engineers range from level one to level six.",
           source="hr", acl=("group:hr",), title="Salary bands"),
    record("acme.json", "Acme Corp renewal is due in March; the champion is Dana.",
           source="crm", kind="crm", acl=("group:sales",), title="Acme account"),
    record("card.eml", "Please charge card 4111 1111 1111 1111 for the Acme renewal.",
           source="mail", kind="email", acl=("public",), title="Renewal payment"),
    record("wiki.md", "The office wifi password rotates every month; ask IT for it.",
           source="wiki", acl=("public",), title="Office wifi"),
]


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    runtime.ingestor.ingest(CORPUS)
    set_user_groups(runtime.engine, user_id="ana", groups=["sales", "hr"])
    with LiveServer(runtime) as live:
        yield live


@pytest.fixture
def k(runtime: Runtime) -> dict[str, str]:
    return keys(runtime.engine)


def _context(client: httpx.Client, **body: Any) -> httpx.Response:
    # Scope tests look at every visible item, however weakly it matches the words.
    return client.post("/v1/context", json={"user_id": "ana", "top_k": 20,
                                            "min_relevance": 0, **body})


def _sources(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {item["source"] for item in resp.json()["items"]}


def _roles_of(dependant: Any) -> set[str]:
    roles: set[str] = set(getattr(dependant.call, "required_roles", ()) or ())
    for sub in dependant.dependencies:
        roles |= _roles_of(sub)
    return roles


def test_every_route_refuses_missing_revoked_and_wrong_role_keys(
        server: LiveServer, runtime: Runtime) -> None:
    """Walks the route table: an endpoint added without a role check fails here."""
    k = keys(runtime.engine)
    revoked_key, revoked = create_key(runtime.engine, name="gone", role="admin")
    revoke_key(runtime.engine, key_id=revoked_key.id)
    checked = 0
    for route in api_routes(create_app(runtime=runtime)):
        if route.path in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        allowed = _roles_of(route.dependant)
        assert allowed, f"{route.path} declares no roles"
        for method in sorted(route.methods or ()):
            def call(client: httpx.Client, method: str = method, path: str = path
                     ) -> httpx.Response:
                return client.request(method, path, json={})

            with server.client() as anon:
                resp = call(anon)
                if resp.status_code == 303 and path.startswith("/dashboard"):
                    # The browser pages send a visitor without credentials to the login form.
                    assert resp.headers["location"] == "/dashboard/login", (method, path)
                else:
                    assert resp.status_code == 401, (method, path, resp.text)
                    assert resp.json()["error"]["code"] == "unauthenticated"
                    assert resp.headers["www-authenticate"] == "Bearer"
            with server.client(revoked) as client:
                assert call(client).status_code == 401, (method, path)
            with server.client("ctxd_" + "0" * 16 + "_forged") as client:
                assert call(client).status_code == 401, (method, path)
            for role in sorted({"agent", "analyst"} - allowed):
                with server.client(k[role]) as client:
                    resp = call(client)
                    assert resp.status_code == 403, (method, path, role, resp.text)
                    assert resp.json()["error"]["code"] == "forbidden"
            checked += 1
    assert checked >= 10


def test_key_scope_narrows_inside_the_query_and_never_widens(server: LiveServer,
                                                             runtime: Runtime) -> None:
    _, hr_docs = create_key(runtime.engine, name="hr-bot", role="agent",
                            policy=KeyPolicy(sources=frozenset({"hr"}),
                                             kinds=frozenset({"document"})))
    with server.client(hr_docs) as client:
        assert _sources(_context(client, query="renewal card salary leave wifi")) == {"hr"}
        # Asking for more than the key allows never widens: crm is outside the key's scope,
        # so for this key it is an unknown source (422 naming the ones it may use).
        for asked in (["crm", "hr"], ["crm"]):
            resp = _context(client, query="Acme renewal", sources=asked)
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["details"][0]["valid"] == ["hr"]
        assert _context(client, query="Acme", kinds=["crm"]).json()["items"] == []
        # The key's scope and the user's ACL intersect: a public-only user sees no salaries.
        resp = _context(client, query="salary bands", user_id="zed")
        assert {i["source_id"] for i in resp.json()["items"]} == {"leave.md"}
        # In-engine filtering keeps results full length: both hr documents come back.
        assert len(_context(client, query="salary bands", top_k=2).json()["items"]) == 2


def test_group_removal_takes_effect_on_the_next_request(server: LiveServer,
                                                        k: dict[str, str]) -> None:
    with server.client(k["agent"]) as agent, server.client(k["admin"]) as admin:
        assert "acme.json" in {i["source_id"] for i in
                               _context(agent, query="Acme renewal champion").json()["items"]}
        assert admin.put("/v1/principals/ana", json={"groups": ["hr"]}).status_code == 200
        seen = {i["source_id"] for i in _context(agent, query="Acme renewal champion")
                .json()["items"]}
        assert "acme.json" not in seen
        # Through an import with nested groups too: ana -> emea -> sales.
        resp = admin.post("/v1/principals/import", json={
            "format": "csv", "origin": "crm-teams",
            "content": "group,member\nemea,ana\nsales,group:emea\n"})
        assert resp.status_code == 200, resp.text
        assert "acme.json" in {i["source_id"] for i in
                               _context(agent, query="Acme renewal champion").json()["items"]}
        resp = admin.post("/v1/principals/import", json={
            "format": "csv", "origin": "crm-teams", "content": "group,member\nemea,ana\n"})
        assert resp.json()["removed"] == 1
        assert "acme.json" not in {i["source_id"] for i in _context(
            agent, query="Acme renewal champion").json()["items"]}
        bad = admin.post("/v1/principals/import", json={
            "format": "csv", "content": "group,member\nsales,bad id\n"})
        assert bad.status_code == 422 and "line 2" in bad.json()["error"]["message"]


def test_rotation_over_http_keeps_the_old_secret_during_the_grace(server: LiveServer,
                                                                  k: dict[str, str]) -> None:
    with server.client(k["admin"]) as admin:
        created = admin.post("/v1/keys", json={"name": "bot", "role": "agent"}).json()
        rotated = admin.post(f"/v1/keys/{created['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["key"] != created["key"] and body["previous_valid_until"]
        assert created["key"] not in admin.get("/v1/keys").text
        for secret in (created["key"], body["key"]):
            with server.client(secret) as agent:
                assert _context(agent, query="leave").status_code == 200
        listed = {row["id"]: row for row in admin.get("/v1/keys").json()}
        assert listed[created["id"]]["last_used_at"] is not None
        assert admin.delete(f"/v1/keys/{created['id']}").status_code == 200
        assert admin.post(f"/v1/keys/{created['id']}/rotate").status_code == 409
        for secret in (created["key"], body["key"]):
            with server.client(secret) as agent:
                assert _context(agent, query="leave").status_code == 401


def test_bad_policy_is_refused_with_the_field_named(server: LiveServer,
                                                    k: dict[str, str]) -> None:
    with server.client(k["admin"]) as admin:
        for policy, field in (({"kinds": ["video"]}, "policy.kinds.0"),
                              ({"max_top_k": 0}, "policy.max_top_k"),
                              ({"rate_per_minute": "fast"}, "policy.rate_per_minute"),
                              ({"scope": ["hr"]}, "policy.scope")):
            resp = admin.post("/v1/keys", json={"name": "x", "role": "agent", "policy": policy})
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["details"][0]["field"] == field
        assert all(row["name"] != "x" for row in admin.get("/v1/keys").json())


def test_output_limits_hold_under_concurrent_clients(server: LiveServer,
                                                     runtime: Runtime) -> None:
    _, secret = create_key(runtime.engine, name="small", role="agent", policy=KeyPolicy(
        max_token_budget=40, max_top_k=2, max_request_bytes=300))

    def call(i: int) -> httpx.Response:
        body: dict[str, Any] = {"query": "renewal leave wifi salary", "user_id": "ana"}
        if i % 4 == 0:
            body |= {"token_budget": 41}
        elif i % 4 == 1:
            body |= {"token_budget": 40, "top_k": 3}
        elif i % 4 == 2:
            body |= {"query": "x" * 400}
        else:
            body |= {"token_budget": 40, "top_k": 2}
        with server.client(secret) as client:
            return client.post("/v1/context", json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(call, range(48)))
    for i, resp in enumerate(responses):
        if i % 4 == 0:
            assert resp.status_code == 422
            assert resp.json()["error"]["details"][0]["field"] == "token_budget"
        elif i % 4 == 1:
            assert resp.status_code == 422
            assert resp.json()["error"]["details"][0]["field"] == "top_k"
        elif i % 4 == 2:
            assert resp.status_code == 413
            assert resp.json()["error"]["code"] == "payload_too_large"
        else:
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["token_count"] <= 40 and len(body["items"]) <= 2


def _flood(server: LiveServer, secret: str, n: int) -> list[httpx.Response]:
    def call(_: int) -> httpx.Response:
        with server.client(secret) as client:
            return client.post("/v1/context", json={"query": "leave", "user_id": "ana"})

    with ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(call, range(n)))


def test_rate_limit_holds_under_concurrent_clients(server: LiveServer, runtime: Runtime,
                                                   k: dict[str, str]) -> None:
    key, secret = create_key(runtime.engine, name="limited", role="agent",
                             policy=KeyPolicy(rate_per_minute=1, burst=5))
    responses = _flood(server, secret, 40)
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 5 and codes.count(429) == 35
    for resp in responses:
        if resp.status_code == 429:
            assert 1 <= int(resp.headers["retry-after"]) <= 60
            assert resp.json()["error"]["code"] == "rate_limited"
    with server.client(k["agent"]) as other:  # other keys have their own buckets
        assert _context(other, query="leave").status_code == 200
    with server.client(k["analyst"]) as analyst:
        page = analyst.get("/v1/audit", params={"actor": key.id, "limit": 100}).json()
    outcomes = [e["outcome"] for e in page["events"]]
    assert outcomes.count("rate_limited") == 35


def test_rate_limit_is_shared_across_replicas_through_redis(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(redis_url="redis://127.0.0.1:6379/0")
    runtime.ingestor.ingest(CORPUS)
    _, secret = create_key(runtime.engine, name="shared", role="agent",
                           policy=KeyPolicy(rate_per_minute=1, burst=6))
    with LiveServer(runtime) as one, LiveServer(runtime) as two:
        def call(i: int) -> int:
            with (one if i % 2 else two).client(secret) as client:
                return client.post("/v1/context", json={"query": "leave",
                                                        "user_id": "ana"}).status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            codes = list(pool.map(call, range(40)))
    assert codes.count(200) == 6 and codes.count(429) == 34


def test_every_context_request_is_audited_with_redactions(server: LiveServer,
                                                          k: dict[str, str]) -> None:
    with server.client(k["agent"]) as agent:
        served = _context(agent, query="charge the card for the Acme renewal")
        assert served.status_code == 200
        items = served.json()["items"]
        card = next(i for i in items if i["source_id"] == "card.eml")
        assert "4111" not in card["text"] and "[REDACTED:card_number]" in card["text"]
        assert _context(agent, query="x", top_k=0).status_code == 422
        assert _context(agent, query="leave", token_budget=10**9).status_code == 422
    with server.client(k["analyst"]) as analyst:
        page = analyst.get("/v1/audit", params={"action": "context.request"}).json()
        events = page["events"]
        assert len(events) == 2  # the top_k=0 request fails validation before the route
        # A served request is audited after its response is sent, so it may land after the
        # refusal that followed it: match events by outcome, not by position.
        by_outcome = {e["outcome"]: e for e in events}
        refused, ok = by_outcome["invalid_input"], by_outcome["ok"]
        assert refused["outcome"] == "invalid_input" and refused["item_ids"] == []
        assert ok["outcome"] == "ok" and ok["item_ids"] == [i["id"] for i in items]
        assert ok["redactions"] == 1 and ok["details"]["redactions_by_rule"] == {
            "card_number": 1}
        assert ok["query"] is None and len(ok["query_hash"]) == 64  # text only if configured
        assert ok["user_id"] == "ana" and ok["actor"] == "test-agent" and ok["latency_ms"] > 0
        assert analyst.get("/v1/audit", params={"user_id": "nobody"}).json()["events"] == []
        bad = analyst.get("/v1/audit", params={"since": "yesterday"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] \
            == "query.since"
        twice = analyst.get("/v1/audit?outcome=ok&outcome=rate_limited")
        assert twice.status_code == 422
        assert twice.json()["error"]["details"] == [{
            "field": "query.outcome",
            "message": "query parameter 'outcome' given more than once"}]
        since = analyst.get("/v1/audit", params={"since": "2026-01-01",
                                                 "until": "2099-01-01T00:00:00Z"})
        assert len(since.json()["events"]) == 2


def test_admin_actions_are_audited_and_paged(server: LiveServer, k: dict[str, str]) -> None:
    with server.client(k["admin"]) as admin:
        made = admin.post("/v1/keys", json={"name": "b1", "role": "agent",
                                            "policy": {"sources": ["hr"]}}).json()
        admin.put(f"/v1/keys/{made['id']}/policy", json={"kinds": ["email"]})
        admin.post(f"/v1/keys/{made['id']}/rotate")
        admin.delete(f"/v1/keys/{made['id']}")
        admin.put("/v1/principals/bo", json={"groups": ["finance"]})
        admin.put("/v1/groups/finance", json={"parents": ["staff"]})
        first = admin.get("/v1/audit", params={"limit": 4}).json()
        assert [e["action"] for e in first["events"]] == [
            "group.set", "principal.set", "key.revoke", "key.rotate"]
        rest = admin.get("/v1/audit", params={"limit": 4,
                                              "before_id": first["next_before_id"]}).json()
        assert [e["action"] for e in rest["events"]] == ["key.policy", "key.create"]
        assert rest["next_before_id"] is None
        assert made["key"] not in admin.get("/v1/audit").text  # secrets are never audited
        keys_only = admin.get("/v1/audit", params={"action": "key."}).json()["events"]
        assert {e["target"] for e in keys_only} == {f"key:{made['id']}"}


def test_connector_admin_actions_are_audited(make_runtime: Callable[..., Runtime],
                                             tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Expenses\nReceipts are due within thirty days.\n")
    runtime = make_runtime(filesystem_allowed_roots=[tmp_path])
    k = keys(runtime.engine)
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin:
        created = admin.post("/v1/connectors", json={
            "name": "handbook", "kind": "filesystem",
            "config": {"path": str(docs), "default_acl": ["public"]}})
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        assert admin.patch(f"/v1/connectors/{cid}", json={"enabled": False}).status_code == 200
        assert admin.post(f"/v1/connectors/{cid}/sync?wait=true").status_code == 200
        assert admin.delete(f"/v1/connectors/{cid}").status_code == 200
        events = admin.get("/v1/audit", params={"action": "connector."}).json()["events"]
    assert [e["action"] for e in events] == [
        "connector.delete", "connector.sync", "connector.update", "connector.create"]
    assert {e["target"] for e in events} == {f"connector:{cid}"}
    assert events[2]["details"]["fields"] == ["enabled"]
    assert str(docs) not in str(events)  # config values never reach the audit log


@pytest.mark.parametrize("half_life", [1e-300, "NaN", "Infinity"])
def test_degenerate_half_lives_are_refused_not_a_500(server: LiveServer, k: dict[str, str],
                                                     half_life: object) -> None:
    """Found by schemathesis: a near-zero half-life made the engine's decay scale 0."""
    with server.client(k["agent"]) as agent:
        resp = agent.post("/v1/context", content=(
            '{"query": "leave", "user_id": "ana", "freshness": {"half_life_days": '
            f'{{"email": {half_life}}}}}}}'), headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"][0]["field"] == "freshness.half_life_days.email"
