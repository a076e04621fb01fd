"""Dashboard logins are throttled per client and per key id, audited, and their session
cookie is Secure behind TLS (directly, or through a trusted proxy that says so).

Reproduces: "300 wrong dashboard logins in 1.6 s: no throttling, no audit entry."
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from contextd.api.proxies import server_options
from contextd.runtime import Runtime
from contextd.state import audit
from contextd.state.keys import create_key
from contextd.state.tables import AuditEvent
from tests.conftest import LiveServer
from tests.security.conftest import Api


def _logins(engine: Engine, outcome: str | None = None) -> list[AuditEvent]:
    events, _ = audit.query(engine, audit.AuditFilter(action="dashboard.login",
                                                      outcome=outcome), limit=1000)
    return events


def test_300_wrong_logins_are_throttled_and_audited(api: Api) -> None:
    analyst_id = create_key(api.runtime.engine, name="victim", role="analyst")[0].id
    statuses = []
    for n in range(300):
        response = api.client.post("/dashboard/login", data={
            "api_key": f"ctxd_{analyst_id}_wrong-secret-{n}"}, follow_redirects=False)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    failed = _logins(api.runtime.engine, "failed")
    throttled = _logins(api.runtime.engine, "throttled")
    assert len(failed) == 5 and {e.actor_key_id for e in failed} == {analyst_id}
    assert len(throttled) == 1  # one entry per throttled bucket and minute, not 295
    assert throttled[0].target == "client:testclient"
    assert "wrong-secret" not in str([e.details for e in failed + throttled])


def test_the_key_id_is_throttled_across_clients(make_api: Callable[..., Api]) -> None:
    api = make_api(login_attempts_per_minute=3)
    analyst = create_key(api.runtime.engine, name="victim", role="analyst")
    for _ in range(3):
        api.client.post("/dashboard/login", data={"api_key": f"ctxd_{analyst[0].id}_nope"})
    # even the right secret waits: the key id is being guessed at
    blocked = api.client.post("/dashboard/login", data={"api_key": analyst[1]},
                              follow_redirects=False)
    assert blocked.status_code == 429


def _cookie(response: object) -> str:
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    return str(response.headers["set-cookie"]).lower()  # type: ignore[attr-defined]


def test_cookie_is_secure_only_behind_tls_said_by_a_trusted_proxy(
        make_runtime: Callable[..., Runtime], make_api: Callable[..., Api]) -> None:
    https = {"X-Forwarded-Proto": "https"}
    trusting = make_runtime(scheduler_enabled=False, trusted_proxies=["127.0.0.1/32"])
    token = create_key(trusting.engine, name="a", role="analyst")[1]
    with LiveServer(trusting) as server, server.client() as client:  # peer 127.0.0.1
        def login(headers: dict[str, str]) -> str:
            return _cookie(client.post("/dashboard/login", data={"api_key": token},
                                       headers=headers, follow_redirects=False))

        assert "secure" in login(https)
        assert "secure" not in login({})
    assert _logins(trusting.engine, "ok")
    # No trusted proxies: the header is ignored; a direct HTTPS request is still Secure.
    api = make_api()
    token = create_key(api.runtime.engine, name="a", role="analyst")[1]
    forged = _cookie(api.client.post("/dashboard/login", data={"api_key": token},
                                     headers=https, follow_redirects=False))
    assert "secure" not in forged and "httponly" in forged
    direct = _cookie(api.client.post("https://testserver/dashboard/login",
                                     data={"api_key": token}, follow_redirects=False))
    assert "secure" in direct


def test_the_server_believes_forwarded_headers_from_trusted_proxies_only() -> None:
    assert server_options([]) == {"proxy_headers": False, "forwarded_allow_ips": None}
    assert server_options(["10.0.0.0/8", "::1"]) == {
        "proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/8,::1"}
