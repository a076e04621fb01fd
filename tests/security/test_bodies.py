"""Request bodies that once crashed the service: JSON nested 20-32k deep and a lone UTF-16
surrogate, on every route that takes a JSON body, for a key that has already made a
request (whose verification is then remembered).

Reproduces: "Four bodies gave 500 (JSON nested 20-32k deep, a lone surrogate \\ud800 in
the query) once the key had made one request."
"""

from __future__ import annotations

import pytest

from contextd.api.app import api_routes, create_app
from contextd.api.bodies import json_depth, lone_surrogate_at
from tests.security.conftest import Api, key


def _json_routes(api: Api) -> list[tuple[str, str]]:
    found = []
    for route in api_routes(create_app(runtime=api.runtime)):
        if route.dependant.body_params and not any(
                "Form" in type(f.field_info).__name__ or "File" in type(f.field_info).__name__
                for f in route.dependant.body_params):
            path = route.path.replace("{key_id}", "0").replace("{connector_id}", "c0")
            path = path.replace("{ref}", "x").replace("{user_id}", "alice")
            path = path.replace("{group_id}", "g")
            found.extend((m, path) for m in route.methods)
    return found


def _nested(depth: int) -> str:
    return '{"query": "x", "user_id": "alice", "freshness": ' + "[" * depth + "]" * depth + "}"


BODIES = {
    "nested-20k": _nested(20_000),
    "nested-32k-array": "[" * 32_000 + "]" * 32_000,
    "nested-32k-object": '{"a":' * 32_000 + "1" + "}" * 32_000,
    "surrogate-query": '{"query": "\\ud800", "user_id": "alice"}',
    "surrogate-low": '{"query": "ok \\udfff", "user_id": "alice"}',
    "surrogate-key": '{"\\ud800": 1}',
    "invalid-utf8": b'{"query": "\xed\xa0\x80", "user_id": "alice"}',
    "unclosed-deep": "[" * 30_000,
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_bad_bodies_get_a_clear_4xx_on_every_json_route(make_api, name: str) -> None:  # type: ignore[no-untyped-def]
    api = make_api(max_request_bytes=256 * 1024)
    admin = key(api.runtime, "admin", rate_per_minute=100_000, burst=10_000)
    agent = key(api.runtime, "agent", rate_per_minute=100_000, burst=10_000)
    for token in (admin, agent):  # each key has made a request first
        assert api.call("POST", "/v1/context", token,
                        json={"query": "travel", "user_id": "alice"}).status_code == 200
    routes = _json_routes(api)
    assert ("POST", "/v1/context") in routes and len(routes) >= 8
    body = BODIES[name]
    for token in (agent, admin):
        for method, path in routes:
            response = api.call(method, path, token, content=body,
                                headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (name, method, path, response.text)
            assert response.json()["error"]["code"]
    answer = api.call("POST", "/v1/context", agent, content=body,
                      headers={"content-type": "application/json"})
    if name.startswith("nested") or name == "unclosed-deep":
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "body_too_deep"
    elif name.startswith("surrogate") or name == "invalid-utf8":  # ED A0 80 is U+D800
        assert answer.status_code == 422
        assert answer.json()["error"]["details"][0]["type"] == "string_unicode"
    # the service is fine afterwards
    assert api.call("POST", "/v1/context", agent,
                    json={"query": "travel", "user_id": "alice"}).status_code == 200


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 5 + b"]" * 5) == 5
    assert lone_surrogate_at({"a": [{"b": "ok"}, {"c": "x\ud800"}]}) == "a.1.c"
    assert lone_surrogate_at({"a": "\U0001f600"}) is None  # a proper pair decodes whole


def test_legitimate_bodies_within_the_depth_limit_pass(api: Api) -> None:
    agent = key(api.runtime, "agent")
    ok = api.call("POST", "/v1/context", agent, json={
        "query": "travel 😀 policy", "user_id": "alice",
        "freshness": {"half_life_days": {"document": 30}}})
    assert ok.status_code == 200, ok.text
