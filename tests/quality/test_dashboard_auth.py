"""Who may see the dashboard: login form -> session cookie (HttpOnly, never the key),
bearer keys for scripts, the right role, and sessions that end with their key."""

from __future__ import annotations

from contextd.runtime import Runtime
from contextd.state.keys import revoke_key
from tests.conftest import LiveServer
from tests.factories import keys


def test_dashboard_login_sessions_and_roles(live_server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with live_server.client() as browser:
        first = browser.get("/dashboard", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/dashboard/login"
        form = browser.get("/dashboard/login")
        assert form.status_code == 200 and 'name="api_key"' in form.text
        assert "default-src 'none'" in form.headers["content-security-policy"]
        assert browser.get("/dashboard/static/dashboard.css").status_code == 200

        wrong = browser.post("/dashboard/login", data={"api_key": "ctxd_nope_nope"})
        assert wrong.status_code == 401 and "contextd_dashboard" not in wrong.cookies
        agent = browser.post("/dashboard/login", data={"api_key": k["agent"]})
        assert agent.status_code == 403 and "contextd_dashboard" not in agent.cookies

        ok = browser.post("/dashboard/login", data={"api_key": k["analyst"]},
                          follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        set_cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
        assert "Path=/dashboard" in set_cookie and k["analyst"] not in set_cookie
        page = browser.get("/dashboard")
        assert page.status_code == 200 and "Context quality" in page.text
        assert k["analyst"] not in page.text

        analyst_id = k["analyst"].split("_")[1]
        revoke_key(runtime.engine, key_id=analyst_id)
        after = browser.get("/dashboard", follow_redirects=False)
        assert after.status_code == 303  # the session died with its key

        browser.post("/dashboard/login", data={"api_key": k["admin"]})
        assert browser.get("/dashboard").status_code == 200
        token = browser.cookies.get("contextd_dashboard")
        assert token
        out = browser.post("/dashboard/logout", follow_redirects=False)
        assert out.status_code == 303
        browser.cookies.clear()
        replayed = browser.get("/dashboard", headers={"Cookie": f"contextd_dashboard={token}"},
                               follow_redirects=False)
        assert replayed.status_code == 303  # the server forgot the session

    with live_server.client(k["agent"]) as agent_bearer:
        assert agent_bearer.get("/dashboard").status_code == 403
    with live_server.client("ctxd_bad_key") as bad_bearer:
        assert bad_bearer.get("/dashboard").status_code == 401
    with live_server.client(k["admin"]) as admin_bearer:
        assert admin_bearer.get("/dashboard").status_code == 200
