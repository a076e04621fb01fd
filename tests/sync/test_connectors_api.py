"""``/v1/connectors`` over real HTTP (live server) with a ``sql`` source on real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from contextd.runtime import Runtime
from contextd.state.tables import ConnectorRow, DocumentRow, QuarantineRow, SyncRunRow
from tests.conftest import LiveServer
from tests.factories import keys
from tests.pg import scratch_database


@pytest.fixture
def pg() -> Iterator[tuple[str, Engine]]:
    with scratch_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE tickets (id int PRIMARY KEY, subject text, "
                              "body text, acl text, updated_at timestamptz NOT NULL)"))
            conn.execute(text(
                "INSERT INTO tickets SELECT g, 'Ticket ' || g, 'Customer reports that the "
                "turbine ' || g || ' vibrates above 40 Hz.', 'group:support', "
                "timestamptz '2026-11-01 00:00+00' + g * interval '1 min' "
                "FROM generate_series(1, 12) g"))
        yield url, engine
        engine.dispose()


@pytest.fixture
def k(runtime: Runtime) -> dict[str, str]:
    return keys(runtime.engine)


def body(url: str, **overrides: Any) -> dict[str, Any]:
    config = {"url": url, "table": "tickets", "key_column": "id",
              "updated_at_column": "updated_at", "text_template": "{subject}: {body}",
              "title_column": "subject", "acl_column": "acl"}
    return {"name": "tickets", "kind": "sql", "config": config,
            "schedule": {"interval_seconds": 3600}, **overrides}


def count(runtime: Runtime, table: type) -> int:
    with Session(runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "nosuchkind"}, "kind"),
    ({"config": {"table": "tickets"}}, "config.url"),
    ({"config": "postgres://x"}, "config"),
    ({"schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
    ({"schedule": {"cron": "every day"}}, "schedule.cron"),
    ({"schedule": {"interval_seconds": "soon"}}, "schedule.interval_seconds"),
    ({"schedule": {"interval_seconds": 5, "cron": "* * * * *"}}, "schedule.cron"),
    ({"schedule": {}}, "schedule.cron"),
    ({"name": "has space"}, "name"),
    ({"acl": {"principals": ["bob"]}}, "acl.principals"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_config_is_422_naming_the_field_and_nothing_is_saved(
        live_server: LiveServer, k: dict[str, str], runtime: Runtime,
        change: dict[str, Any], field: str) -> None:
    payload = body("postgresql+psycopg://u:Pw-Secret9@127.0.0.1/db", **change)
    if "config" in change and isinstance(change["config"], dict):
        payload["config"] = {**change["config"]}
    with live_server.client(k["admin"]) as admin:
        resp = admin.post("/v1/connectors", json=payload)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert field in [d["field"] for d in error["details"]], error
    assert "Pw-Secret9" not in resp.text
    assert count(runtime, ConnectorRow) == 0


def test_wrong_type_in_config_names_the_field(live_server: LiveServer,
                                              k: dict[str, str]) -> None:
    payload = body("postgresql+psycopg://u:pw@127.0.0.1/db")
    payload["config"]["batch_size"] = "lots"
    with live_server.client(k["admin"]) as admin:
        resp = admin.post("/v1/connectors", json=payload)
    assert resp.status_code == 422
    assert [d["field"] for d in resp.json()["error"]["details"]] == ["config.batch_size"]


def test_roles(live_server: LiveServer, k: dict[str, str], pg: tuple[str, Engine]) -> None:
    url, _ = pg
    with live_server.client(k["agent"]) as agent:
        assert agent.post("/v1/connectors", json=body(url)).status_code == 403
        assert agent.get("/v1/connectors").status_code == 403
    with live_server.client() as anonymous:
        assert anonymous.get("/v1/connectors").status_code == 401
    with live_server.client(k["admin"]) as admin:
        cid = admin.post("/v1/connectors", json=body(url)).json()["id"]
    with live_server.client(k["analyst"]) as analyst:
        assert analyst.get(f"/v1/connectors/{cid}/runs").status_code == 200
        assert analyst.get(f"/v1/connectors/{cid}").status_code == 200
        assert analyst.post(f"/v1/connectors/{cid}/sync").status_code == 403
        assert analyst.patch(f"/v1/connectors/{cid}", json={"enabled": False}).status_code == 403
        assert analyst.delete(f"/v1/connectors/{cid}").status_code == 403


def test_lifecycle_secrets_runs_quarantine_and_purge(
        live_server: LiveServer, k: dict[str, str], runtime: Runtime, pg: tuple[str, Engine],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url, source = pg
    secret_url = url.replace("postgres@", "postgres:TopSecret-42@")  # trust auth ignores it
    with source.begin() as conn:
        conn.execute(text("UPDATE tickets SET acl = 'everyone' WHERE id = 7"))
    with live_server.client(k["admin"]) as admin:
        created = admin.post("/v1/connectors", json=body(secret_url))
        assert created.status_code == 201, created.text
        connector = created.json()
        cid = connector["id"]
        assert connector["config"]["url"] == "********"
        assert connector["status"]["state"] == "pending"
        assert admin.post("/v1/connectors", json=body(url)).status_code == 409

        run = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert run["status"] == "partial" and run["records_pulled"] == 11
        assert run["quarantined"] == 1 and run["chunks_embedded"] >= 11
        [entry] = admin.get(f"/v1/connectors/{cid}/quarantine").json()
        assert entry["source_id"] == "7" and "everyone" in entry["error"]

        # Fixed at the source without touching updated_at: only the quarantine retry
        # (the connector's fetch) can find it. Nothing else is re-embedded.
        with source.begin() as conn:
            conn.execute(text("UPDATE tickets SET acl = 'public' WHERE id = 7"))
        rerun = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert rerun["status"] == "success" and rerun["quarantined"] == 0
        assert rerun["chunks_embedded"] == 1
        assert admin.get(f"/v1/connectors/{cid}/quarantine").json() == []

        unchanged = admin.post(f"/v1/connectors/{cid}/sync?wait=true").json()
        assert unchanged["status"] == "success" and unchanged["chunks_embedded"] == 0

        runs = admin.get(f"/v1/connectors/{cid}/runs").json()
        assert [r["status"] for r in runs] == ["success", "success", "partial"]
        assert all(r["finished_at"] and r["started_at"] for r in runs)
        got = admin.get(f"/v1/connectors/{cid}").json()
        assert got["status"]["state"] == "healthy" and got["status"]["lag_seconds"] < 60
        scraped = admin.get("/metrics").text
        assert 'contextd_connector_failing{connector="tickets"} 0.0' in scraped
        assert 'contextd_connector_lag_seconds{connector="tickets"}' in scraped
        assert got["config"]["url"] == "********"

        # PATCH: the masked secret round-trips unchanged; pause and resume.
        patched = admin.patch(f"/v1/connectors/{cid}", json={
            "config": {**got["config"], "batch_size": 5}, "schedule": {"cron": "*/5 * * * *"}})
        assert patched.status_code == 200, patched.text
        with Session(runtime.engine) as session:
            stored = session.get(ConnectorRow, cid)
            assert stored is not None and stored.config["url"] == secret_url
            assert stored.config["batch_size"] == 5
        assert patched.json()["schedule"]["cron"] == "*/5 * * * *"
        bad = admin.patch(f"/v1/connectors/{cid}", json={"config": {"batch_size": 0}})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == \
            "config.batch_size"
        paused = admin.post(f"/v1/connectors/{cid}/pause").json()
        assert paused["status"]["state"] == "paused" and paused["enabled"] is False
        assert admin.post(f"/v1/connectors/{cid}/resume").json()["status"]["state"] == "healthy"
        listed = admin.get("/v1/connectors").json()
        assert [c["name"] for c in listed] == ["tickets"]

        assert runtime.store.count("tickets") >= 12
        deleted = admin.delete(f"/v1/connectors/{cid}")
        assert deleted.status_code == 200 and deleted.json()["documents_purged"] == 12
        assert admin.get(f"/v1/connectors/{cid}").status_code == 404
    assert runtime.store.count("tickets") == 0
    for table in (ConnectorRow, SyncRunRow, QuarantineRow, DocumentRow):
        assert count(runtime, table) == 0, table
    assert "TopSecret-42" not in caplog.text
