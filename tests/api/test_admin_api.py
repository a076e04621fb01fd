"""Principals, keys, probes, and a walk over the route table for role checks."""

from __future__ import annotations

import pytest

from contextd.api.app import api_routes, create_app
from contextd.api.routers.health import PUBLIC_PATHS
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys


@pytest.fixture
def k(runtime: Runtime) -> dict[str, str]:
    return keys(runtime.engine)


def test_every_route_requires_a_role_except_probes(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    checked = 0
    for route in api_routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        deps = [d.call for d in route.dependant.dependencies]
        roles = [getattr(d, "required_roles", None) for d in deps]
        assert any(roles), f"{route.methods} {route.path} has no role check"
        checked += 1
    assert checked >= 6


def test_principals_roundtrip(live_server: LiveServer, k: dict[str, str]) -> None:
    with live_server.client(k["admin"]) as admin:
        resp = admin.put("/v1/principals/dana", json={"groups": ["sales", "support", "sales"]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["groups"] == ["sales", "support"]
        got = admin.get("/v1/principals/dana").json()
        assert got["principals"] == ["group:sales", "group:support", "public", "user:dana"]
        assert admin.get("/v1/principals/nobody").status_code == 404
        assert admin.put("/v1/principals/dana", json={"groups": ["bad group"]}).status_code == 422
        assert admin.put("/v1/principals/dana", json={"groups": "sales"}).status_code == 422
    with live_server.client(k["analyst"]) as analyst:
        assert analyst.get("/v1/principals/dana").status_code == 200
        assert analyst.put("/v1/principals/dana", json={"groups": []}).status_code == 403
    with live_server.client(k["agent"]) as agent:
        assert agent.get("/v1/principals/dana").status_code == 403


def test_keys_are_shown_once_and_revocable(live_server: LiveServer, k: dict[str, str]) -> None:
    with live_server.client(k["admin"]) as admin:
        created = admin.post("/v1/keys", json={"name": "bot", "role": "agent"})
        assert created.status_code == 201
        secret = created.json()["key"]
        listed = admin.get("/v1/keys").json()
        assert all("key" not in row and "secret_hash" not in row for row in listed)
        assert secret not in admin.get("/v1/keys").text
        assert admin.post("/v1/keys", json={"name": "x", "role": "root"}).status_code == 422
        assert admin.delete(f"/v1/keys/{created.json()['id']}").status_code == 200
        assert admin.delete("/v1/keys/doesnotexist").status_code == 404
    with live_server.client(secret) as revoked:
        assert revoked.post("/v1/context", json={"query": "x", "user_id": "a"}).status_code == 401
    with live_server.client(k["agent"]) as agent:
        assert agent.get("/v1/keys").status_code == 403


def test_probes(live_server: LiveServer) -> None:
    with live_server.client() as anon:
        assert anon.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = anon.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "vector_store": "ok"}
