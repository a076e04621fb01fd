"""The imap, hubspot and salesforce sources driven through ``/v1/connectors`` over real HTTP.

IMAP runs against the private Dovecot; HubSpot and Salesforce against the loopback fakes of
those unreachable SaaS APIs (``fake_saas.py``), which follow their documented shapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.connectors.conftest import ERIN, USERS
from tests.connectors.fake_saas import FakeHubSpot, FakeSalesforce, Fault
from tests.connectors.imap_server import DovecotServer
from tests.connectors.test_imap import message
from tests.factories import keys

INTERVAL = 5
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def wait_for(check: Callable[[], Any], timeout: float) -> float:
    """Poll ``check`` until it is truthy; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not true within {timeout}s"
        time.sleep(0.25)
    return time.monotonic() - started


def served(agent: httpx.Client, user: str, query: str) -> str:
    resp = agent.post("/v1/context", json={"query": query, "user_id": user, "top_k": 10,
                                           "include_memory": False})
    assert resp.status_code == 200, resp.text
    return "\n".join(item["text"] for item in resp.json()["items"])


def test_imap_on_a_5_second_schedule_serves_new_mail_and_drops_expunged_mail(
        dovecot: DovecotServer, mailbox: str, make_runtime: Callable[..., Runtime],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dovecot.deliver(ERIN, message("s1", "Dock schedule", "Dock 4 closes at 18:00 on "
                                  "Fridays for the inventory count."), mailbox)
    runtime = make_runtime(scheduler_enabled=True)
    k = keys(runtime.engine)
    config = {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "user": ERIN,
              "password": USERS[ERIN], "folders": [mailbox]}
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin, \
            server.client(k["agent"]) as agent:
        created = admin.post("/v1/connectors", json={
            "name": "erin-mail", "kind": "imap", "config": config,
            "schedule": {"interval_seconds": INTERVAL}})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["password"] == "********"
        cid = created.json()["id"]
        wait_for(lambda: "Dock 4 closes" in served(agent, ERIN, "dock closing time"),
                 2 * INTERVAL + 5)
        assert "Dock 4 closes" not in served(agent, "bob@northwind.example",
                                             "dock closing time")

        dovecot.deliver(ERIN, message("s2", "Forklift training", "Forklift refresher "
                                      "training is on Monday in hall B."), mailbox)
        new_mail = wait_for(lambda: "hall B" in served(agent, ERIN, "forklift training"),
                            INTERVAL + 5)
        dovecot.expunge(ERIN, "<s1@acme.example>", mailbox)
        expunged = wait_for(lambda: "Dock 4" not in served(agent, ERIN, "dock closing time"),
                            INTERVAL + 5)
        print(f"\nnew mail served after {new_mail:.1f}s, expunged mail gone after "
              f"{expunged:.1f}s (interval {INTERVAL}s)")

        def idle_run() -> bool:
            done = [r for r in admin.get(f"/v1/connectors/{cid}/runs").json()
                    if r["status"] == "success"]
            return bool(done) and done[0]["records_pulled"] == 0 \
                and done[0]["chunks_embedded"] == 0
        wait_for(idle_run, INTERVAL + 5)
        status = admin.get(f"/v1/connectors/{cid}").json()["status"]
        assert status["state"] == "healthy"
    assert USERS[ERIN] not in caplog.text


def test_imap_wrong_password_is_a_failing_status_without_retries(
        dovecot: DovecotServer, mailbox: str, runtime: Runtime, live_server: LiveServer) -> None:
    k = keys(runtime.engine)
    failed_logins_before = dovecot.log().count("auth failed")
    with live_server.client(k["admin"]) as admin:
        created = admin.post("/v1/connectors", json={
            "name": "bad-mail", "kind": "imap", "config": {
                "host": "127.0.0.1", "port": dovecot.port, "security": "none", "user": ERIN,
                "password": "not-the-password", "folders": [mailbox]}})
        assert created.status_code == 201, created.text
        run = admin.post(f"/v1/connectors/{created.json()['id']}/sync?wait=true").json()
        assert run["status"] == "failed" and run["error_code"] == "source_auth"
        assert f"login as '{ERIN}' on 127.0.0.1 rejected" in run["error"]
        assert run["attempts"] <= 1
        status = admin.get(f"/v1/connectors/{created.json()['id']}").json()["status"]
        assert status["state"] == "failing" and "rejected" in status["last_error"]
    # One refused login at the server for the whole run: no retry storm.
    def refused() -> int:
        return dovecot.log().count("auth failed") - failed_logins_before
    wait_for(refused, 5)  # dovecot's log process writes asynchronously
    time.sleep(1)
    assert refused() == 1


def test_bad_configs_are_422_naming_the_field(runtime: Runtime,
                                              live_server: LiveServer) -> None:
    k = keys(runtime.engine)
    cases = [
        ({"kind": "imap", "config": {"host": "h", "user": "u"}}, "config.password"),
        ({"kind": "imap", "config": {"host": "h", "user": "u", "password": "p",
                                     "port": "x"}}, "config.port"),
        ({"kind": "hubspot", "config": {"access_token": "t", "object_types": ["tickets"]}},
         "config.object_types.0"),
        ({"kind": "salesforce", "config": {"instance_url": "https://x.my.salesforce.com"}},
         "config.access_token"),
    ]
    with live_server.client(k["admin"]) as admin:
        for body, field in cases:
            resp = admin.post("/v1/connectors", json={"name": "c", **body})
            assert resp.status_code == 422, resp.text
            assert field in [d["field"] for d in resp.json()["error"]["details"]], resp.text
        assert admin.get("/v1/connectors").json() == []  # nothing saved


def test_hubspot_through_the_api_rate_limits_quarantine_and_a_wrong_token(
        runtime: Runtime, live_server: LiveServer) -> None:
    k = keys(runtime.engine)
    with FakeHubSpot() as api, live_server.client(k["admin"]) as admin, \
            live_server.client(k["agent"]) as agent:
        api.owners = [{"id": "1", "email": "alice@northwind.example",
                       "teams": [{"id": "7", "name": "Sales", "primary": True}]}]
        api.put("deals", "21", T0, dealname="Helix pilot", amount="90000",
                description="Helix pilot covers two picking robots in Lyon.",
                hubspot_owner_id="1")
        api.put("notes", "31", T0, hs_note_body="", hubspot_owner_id="1")  # malformed
        api.fail_next(Fault(429, {"Retry-After": "1"}), Fault(503), Fault(503))
        config = {"access_token": api.token, "base_url": api.base_url,
                  "retry": {"initial_backoff_seconds": 0.05}}
        created = admin.post("/v1/connectors", json={"name": "hs", "kind": "hubspot",
                                                     "config": config})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["access_token"] == "********"
        cid = created.json()["id"]
        run = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert run["status"] == "partial" and run["records_pulled"] == 1
        assert run["quarantined"] == 1
        [entry] = admin.get(f"/v1/connectors/{cid}/quarantine").json()
        assert entry["source_id"] == "note:31" and "note has no body" in entry["error"]
        assert "two picking robots" in served(agent, "alice@northwind.example", "Helix pilot")
        assert "two picking robots" not in served(agent, "eve", "Helix pilot")

        api.objects["notes"]["31"]["properties"]["hs_note_body"] = "<p>Pilot signed.</p>"
        rerun = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert rerun["status"] == "success" and rerun["quarantined"] == 0
        assert admin.get(f"/v1/connectors/{cid}/quarantine").json() == []
        again = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert again["chunks_embedded"] == 0 and again["records_pulled"] == 0

        patched = admin.patch(f"/v1/connectors/{cid}",
                              json={"config": {**config, "access_token": "pat-wrong"}})
        assert patched.status_code == 200, patched.text
        api.requests.clear()
        failed = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert failed["status"] == "failed" and failed["error_code"] == "source_auth"
        assert "credentials rejected" in failed["error"] and "pat-wrong" not in failed["error"]
        assert len(api.requests) == 1  # one 401, no retry storm
        assert admin.get(f"/v1/connectors/{cid}").json()["status"]["state"] == "failing"


def test_salesforce_through_the_api_serves_changes_and_drops_deletions(
        runtime: Runtime, live_server: LiveServer) -> None:
    k = keys(runtime.engine)
    user, opp = "005000000000001AAA", "006000000000001AAA"
    with FakeSalesforce() as api, live_server.client(k["admin"]) as admin, \
            live_server.client(k["agent"]) as agent:
        api.put("User", user, T0, Username="alice@northwind.example", UserRole=None)
        api.put("Opportunity", opp, T0, Name="Cobalt fleet renewal", StageName="Proposal",
                Amount=50000, OwnerId=user)
        config = {"instance_url": api.base_url, "client_id": api.client[0],
                  "client_secret": api.client[1], "objects": ["Opportunity"]}
        created = admin.post("/v1/connectors", json={"name": "sf", "kind": "salesforce",
                                                     "config": config})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["client_secret"] == "********"
        cid = created.json()["id"]
        assert admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()["status"] == "success"
        alice = "alice@northwind.example"
        assert "Amount: 50000." in served(agent, alice, "Cobalt fleet renewal amount")
        api.put("Opportunity", opp, T0 + timedelta(hours=1), Amount=65000)
        admin.post(f"/v1/connectors/{cid}/sync?wait=true")
        text = served(agent, alice, "Cobalt fleet renewal amount")
        assert "Amount: 65000." in text and "Amount: 50000." not in text
        api.delete("Opportunity", opp, T0 + timedelta(hours=2))
        run = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert run["deleted"] == 1
        assert "Cobalt" not in served(agent, alice, "Cobalt fleet renewal amount")
