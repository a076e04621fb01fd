"""Keys bound to users: a bound key acts for its users only, on every route that takes a
user; unbound keys are listed; a setting forbids unbound agent keys.

Reproduces: "Any agent key can act as any user_id; a policy with user_ids is rejected."
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from contextd.api.app import api_routes, create_app
from contextd.state.keys import KeyPolicy, create_key
from contextd.state.principals import set_user_groups
from tests.security.conftest import ALICE_CRM, BOB_DOC, Api, key

# Every route that takes a user, and where. A new one must be added here (and go through
# ``api.binding``): the route-table test below fails until it is.
USER_ROUTES = {
    ("POST", "/v1/context"): "body",
    ("POST", "/v1/interactions"): "body",
    ("GET", "/v1/interactions"): "query",
    ("GET", "/v1/sources"): "query",
    ("GET", "/v1/sources/{source}/documents/{source_id:path}"): "query",
    ("DELETE", "/v1/users/{user_id}/memory"): "path",  # admins only
    ("PUT", "/v1/principals/{user_id}"): "path",  # admins only
    ("GET", "/v1/principals/{user_id}"): "path",  # directory, analysts and admins
    ("GET", "/v1/audit"): "query",  # a filter on the log, analysts and admins
}


def _takes_user(route: APIRoute) -> str | None:
    dependant = route.dependant

    def walk(dep) -> str | None:  # type: ignore[no-untyped-def]
        for field in dep.path_params:
            if field.alias == "user_id":
                return "path"
        for field in dep.query_params:
            if field.alias == "user_id":
                return "query"
        for field in dep.body_params:
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
                    and "user_id" in annotation.model_fields:
                return "body"
        for sub in dep.dependencies:
            found = walk(sub)
            if found:
                return found
        return None

    return walk(dependant)


def test_every_route_that_takes_a_user_is_known(api: Api) -> None:
    found = {(method, route.path): where
             for route in api_routes(create_app(runtime=api.runtime))
             for method in route.methods
             if (where := _takes_user(route)) is not None}
    assert found == USER_ROUTES


def test_bound_key_acts_for_its_one_user_only(api: Api) -> None:
    alice = key(api.runtime, "agent", user_ids=["alice"])
    implied = api.call("POST", "/v1/context", alice, json={"query": "Globex renewal terms"})
    assert implied.status_code == 200, implied.text
    assert implied.json()["user_id"] == "alice"
    assert any("CANARY-ALICE-CRM" in i["text"] for i in implied.json()["items"])
    for route, kwargs in [
        ("/v1/context", {"json": {"query": "salary review", "user_id": "bob"}}),
        ("/v1/interactions", {"json": {"query": "salary", "user_id": "bob"}}),
    ]:
        refused = api.call("POST", route, alice, **kwargs)
        assert refused.status_code == 403, (route, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
        assert BOB_DOC not in refused.text
    for path in ("/v1/interactions", "/v1/sources", "/v1/sources/docs/documents/travel.md"):
        assert api.call("GET", path, alice, params={"user_id": "bob"}).status_code == 403
    assert api.call("GET", "/v1/sources", alice).json()["user_id"] == "alice"
    bob_doc = api.call("GET", "/v1/sources/docs/documents/bob-salary.md", alice)
    assert bob_doc.status_code == 404 and BOB_DOC not in bob_doc.text


def test_multi_user_binding_needs_user_id_within_the_set(api: Api) -> None:
    both = key(api.runtime, "agent", user_ids=["alice", "carol"])
    missing = api.call("POST", "/v1/context", both, json={"query": "travel"})
    assert missing.status_code == 422
    assert [d["field"] for d in missing.json()["error"]["details"]] == ["user_id"]
    assert api.call("POST", "/v1/context", both,
                    json={"query": "travel", "user_id": "carol"}).status_code == 200
    assert api.call("POST", "/v1/context", both,
                    json={"query": "travel", "user_id": "bob"}).status_code == 403


def test_group_binding_follows_the_directory(api: Api) -> None:
    sales = key(api.runtime, "agent", group="sales")
    body = {"query": "travel", "user_id": "carol"}
    assert api.call("POST", "/v1/context", sales, json=body).status_code == 200
    assert api.call("POST", "/v1/context", sales,
                    json={"query": "travel", "user_id": "bob"}).status_code == 403
    set_user_groups(api.runtime.engine, user_id="carol", groups=["eng"])  # moved away
    assert api.call("POST", "/v1/context", sales, json=body).status_code == 403


def test_feedback_on_another_users_bundle_is_as_if_unknown(api: Api) -> None:
    admin = key(api.runtime, "admin")
    served = api.call("POST", "/v1/context", admin, json={"query": "salary", "user_id": "bob"})
    bundle_id = served.json()["bundle_id"]
    alice = key(api.runtime, "agent", user_ids=["alice"])
    other = api.call("POST", "/v1/feedback", alice, json={"bundle_id": bundle_id, "rating": 5})
    unknown = api.call("POST", "/v1/feedback", alice, json={"bundle_id": "0" * 36, "rating": 5})
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"]["code"] == unknown.json()["error"]["code"]


def test_policy_with_user_ids_is_accepted_and_unbound_keys_are_listed(api: Api) -> None:
    admin = key(api.runtime, "admin")
    created = api.call("POST", "/v1/keys", admin, json={
        "name": "support-bot", "role": "agent", "policy": {"user_ids": ["alice"]}})
    assert created.status_code == 201, created.text
    assert created.json()["bound"] is True
    assert created.json()["policy"]["user_ids"] == ["alice"]
    grouped = api.call("POST", "/v1/keys", admin, json={
        "name": "sales-bot", "role": "agent", "policy": {"group": "sales"}})
    assert grouped.json()["policy"]["group"] == "sales"
    loose = api.call("POST", "/v1/keys", admin, json={"name": "loose", "role": "agent"})
    unbound = {k["id"] for k in api.call("GET", "/v1/keys", admin,
                                         params={"bound": "false"}).json()}
    bound = {k["id"] for k in api.call("GET", "/v1/keys", admin,
                                       params={"bound": "true"}).json()}
    assert loose.json()["id"] in unbound and loose.json()["id"] not in bound
    assert {created.json()["id"], grouped.json()["id"]} <= bound
    assert not {created.json()["id"], grouped.json()["id"]} & unbound
    for bad in ({"user_ids": []}, {"user_ids": ["a b"]}, {"group": "x:y"}):
        refused = api.call("PUT", f"/v1/keys/{loose.json()['id']}/policy", admin, json=bad)
        assert refused.status_code == 422, bad


def test_required_binding_refuses_unbound_agent_keys(make_api: Callable[..., Api]) -> None:
    api = make_api(require_bound_agent_keys=True)
    admin = key(api.runtime, "admin")
    loose = create_key(api.runtime.engine, name="made-before", role="agent")[1]
    refused = api.call("POST", "/v1/context", loose, json={"query": "x", "user_id": "alice"})
    assert refused.status_code == 403
    assert "bound" in refused.json()["error"]["message"]
    created = api.call("POST", "/v1/keys", admin, json={"name": "loose", "role": "agent"})
    assert created.status_code == 422
    made = api.call("POST", "/v1/keys", admin, json={
        "name": "bound", "role": "agent", "policy": {"user_ids": ["alice"]}}).json()
    assert api.call("PUT", f"/v1/keys/{made['id']}/policy", admin,
                    json={"kinds": ["document"]}).status_code == 422  # would unbind it
    ok = api.call("POST", "/v1/context", made["key"], json={"query": "Globex"})
    assert ok.status_code == 200 and ALICE_CRM in ok.text
    # analysts and admins need no binding
    assert api.call("POST", "/v1/keys", admin,
                    json={"name": "a", "role": "analyst"}).status_code == 201


@pytest.mark.parametrize("role", ["analyst"])
def test_unbound_analyst_reads_no_users_conversations(api: Api, role: str) -> None:
    agent = key(api.runtime, "agent")
    assert api.call("POST", "/v1/interactions", agent, json={
        "query": "Globex discount?", "summary": "37 percent", "user_id": "alice",
        "session_id": "s1"}).status_code == 201
    analyst = key(api.runtime, role)
    assert api.call("GET", "/v1/interactions", analyst,
                    params={"user_id": "alice"}).status_code == 403
    by_session = api.call("GET", "/v1/interactions", analyst, params={"session_id": "s1"})
    assert by_session.status_code == 422  # a user is needed, and none is implied
    granted = create_key(api.runtime.engine, name="granted", role=role,
                         policy=KeyPolicy(user_ids=frozenset({"alice"})))[1]
    page = api.call("GET", "/v1/interactions", granted, params={"session_id": "s1"})
    assert page.status_code == 200
    assert [i["summary"] for i in page.json()["items"]] == ["37 percent"]


def test_a_bound_admin_key_forgets_only_its_users(api: Api) -> None:
    admin = key(api.runtime, "admin", user_ids=["alice"])
    assert api.call("DELETE", "/v1/users/bob/memory", admin).status_code == 403
    assert api.call("DELETE", "/v1/users/alice/memory", admin).status_code == 200
