"""The demo as a starting point: its sources are real connectors an admin can see, change
and sync; each person has one identity; a re-run keeps the same three keys."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable

from contextd.cli_demo import banner
from contextd.demo import KEYS_FILE, demo_keys, load_demo
from contextd.runtime import Runtime
from contextd.state.keys import list_keys
from tests.conftest import SAMPLE_DATA, LiveServer


def test_demo_registers_connectors_keeps_three_keys_and_serves_one_identity(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(scheduler_enabled=False, filesystem_allowed_roots=[SAMPLE_DATA])
    info = load_demo(runtime, SAMPLE_DATA)
    keys = demo_keys(runtime, runtime.settings.data_dir)
    assert set(keys) == {"agent", "admin", "analyst"}
    assert {s["status"] for s in info["synced"].values()} == {"success"}
    key_file = runtime.settings.data_dir / KEYS_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_text()) == keys

    with LiveServer(runtime) as server, server.client(keys["admin"]) as admin, \
            server.client(keys["agent"]) as agent:
        connectors = {c["name"]: c for c in admin.get("/v1/connectors").json()}
        assert set(connectors) == {"docs", "mail", "crm"}
        assert connectors["mail"]["schedule"]["interval_seconds"] == 300
        assert connectors["crm"]["schedule"]["cron"] == "0 * * * *"
        assert all(c["status"]["state"] == "healthy" for c in connectors.values())
        changed = admin.patch(f"/v1/connectors/{connectors['mail']['id']}",
                              json={"schedule": {"interval_seconds": 60}})
        assert changed.status_code == 200, changed.text
        run = admin.post(f"/v1/connectors/{connectors['docs']['id']}/sync",
                         params={"wait": "true"})
        assert run.status_code == 200 and run.json()["status"] == "success"
        served = agent.post("/v1/context", json={
            "query": "Acme renewal discount", "user_id": "alice@northwind.example",
            "top_k": 30, "token_budget": 8000, "include_memory": False}).json()
        kinds = {item["kind"] for item in served["items"]}
        assert {"email", "crm", "document"} <= kinds, kinds

    again = load_demo(runtime, SAMPLE_DATA)
    assert demo_keys(runtime, runtime.settings.data_dir) == keys
    active = [k for k in list_keys(runtime.engine) if k.revoked_at is None]
    assert sorted(k.name for k in active) == ["demo-admin", "demo-agent", "demo-analyst"]
    assert {s["records"] for s in again["synced"].values()} == {0}  # nothing changed
    rows = {row.name: row for row in runtime.connectors.all()}
    assert rows["mail"].schedule["interval_seconds"] == 60  # the admin's change survives

    key_file.unlink()  # lost key file: new keys, the old ones revoked, still three
    fresh = demo_keys(runtime, runtime.settings.data_dir)
    assert fresh["agent"] != keys["agent"]
    active = [k for k in list_keys(runtime.engine) if k.revoked_at is None]
    assert len(active) == 3

    text = banner(info, fresh, "http://127.0.0.1:8080", key_file)
    for expected in ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/docs",
                     "http://127.0.0.1:8080/dashboard", fresh["agent"], fresh["admin"],
                     fresh["analyst"]):
        assert text.count(expected) >= 1
