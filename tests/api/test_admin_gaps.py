"""What an admin needs beyond create: list and page users and groups, unique key names,
key policies checked against real sources, per-key limits that lower defaults."""

from __future__ import annotations

import pytest

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys, record


@pytest.fixture
def k(runtime: Runtime) -> dict[str, str]:
    return keys(runtime.engine)


def test_principals_and_groups_are_listed_in_pages(live_server: LiveServer,
                                                   k: dict[str, str]) -> None:
    with live_server.client(k["admin"]) as admin, live_server.client(k["analyst"]) as analyst:
        for user, groups in (("ann", ["sales"]), ("bo", ["finance", "sales"]), ("cy", [])):
            assert admin.put(f"/v1/principals/{user}", json={"groups": groups}).status_code == 200
        assert admin.put("/v1/groups/sales", json={"parents": ["staff"]}).status_code == 200
        first = analyst.get("/v1/principals", params={"limit": 2}).json()
        assert first == {"principals": [{"user_id": "ann", "groups": ["sales"]},
                                        {"user_id": "bo", "groups": ["finance", "sales"]}],
                         "next_after": "bo"}
        rest = analyst.get("/v1/principals", params={"limit": 2, "after": "bo"}).json()
        assert rest == {"principals": [{"user_id": "cy", "groups": []}], "next_after": None}
        groups = analyst.get("/v1/groups").json()
        assert groups["next_after"] is None
        assert groups["groups"] == [
            {"group_id": "finance", "members": ["user:bo"], "parents": []},
            {"group_id": "sales", "members": ["user:ann", "user:bo"], "parents": ["staff"]},
            {"group_id": "staff", "members": ["group:sales"], "parents": []}]
        assert analyst.get("/v1/groups", params={"limit": 1, "after": "finance"}).json()[
            "groups"][0]["group_id"] == "sales"
        assert analyst.get("/v1/principals", params={"limit": 0}).status_code == 422


def test_key_names_are_unique_among_active_keys(live_server: LiveServer,
                                                k: dict[str, str]) -> None:
    with live_server.client(k["admin"]) as admin:
        first = admin.post("/v1/keys", json={"name": "bot", "role": "agent"})
        assert first.status_code == 201
        again = admin.post("/v1/keys", json={"name": "bot", "role": "analyst"})
        assert again.status_code == 409
        assert again.json()["error"]["details"] == [{"field": "name",
                                                     "message": "already in use"}]
        assert [key["name"] for key in admin.get("/v1/keys").json()].count("bot") == 1
        assert admin.delete(f"/v1/keys/{first.json()['id']}").status_code == 200
        assert admin.post("/v1/keys", json={"name": "bot", "role": "agent"}).status_code == 201


def test_a_policy_naming_an_unknown_source_is_422_and_saves_nothing(
        live_server: LiveServer, runtime: Runtime, k: dict[str, str]) -> None:
    runtime.ingestor.ingest([record("a.md", "Handbook.", source="handbook")])
    with live_server.client(k["admin"]) as admin:
        before = len(admin.get("/v1/keys").json())
        bad = admin.post("/v1/keys", json={"name": "hr", "role": "agent",
                                           "policy": {"sources": ["handbook", "hnadbook"]}})
        assert bad.status_code == 422, bad.text
        [detail] = bad.json()["error"]["details"]
        assert detail["field"] == "policy.sources" and detail["unknown"] == ["hnadbook"]
        assert len(admin.get("/v1/keys").json()) == before
        good = admin.post("/v1/keys", json={"name": "hr", "role": "agent",
                                            "policy": {"sources": ["handbook"]}})
        assert good.status_code == 201, good.text
        key_id = good.json()["id"]
        put = admin.put(f"/v1/keys/{key_id}/policy", json={"sources": ["nosuch"]})
        assert put.status_code == 422 and put.json()["error"]["details"][0]["field"] == "sources"
        [kept] = [key for key in admin.get("/v1/keys").json() if key["id"] == key_id]
        assert kept["policy"]["sources"] == ["handbook"]


def test_key_limits_lower_unsent_defaults_and_refuse_explicit_excess(
        live_server: LiveServer, runtime: Runtime, k: dict[str, str]) -> None:
    runtime.ingestor.ingest([record(f"n{i}.md", f"Note {i} about the warehouse robots.")
                             for i in range(12)])
    with live_server.client(k["admin"]) as admin:
        small = admin.post("/v1/keys", json={"name": "small", "role": "agent",
                                             "policy": {"max_top_k": 5,
                                                        "max_token_budget": 300}}).json()
    with live_server.client(small["key"]) as agent:
        ask = {"query": "warehouse robots", "user_id": "ann", "include_memory": False}
        served = agent.post("/v1/context", json=ask)
        assert served.status_code == 200, served.text
        assert 1 <= len(served.json()["items"]) <= 5
        assert served.json()["token_count"] <= 300
        refused = agent.post("/v1/context", json={**ask, "top_k": 10})
        assert refused.status_code == 422
        assert refused.json()["error"]["details"][0]["field"] == "top_k"
