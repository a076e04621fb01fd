"""Schedules end to end: a connector created through the API with ``interval_seconds: 5``
syncs on its own; a change in PostgreSQL is served by ``/v1/context`` within one interval;
a deletion is gone after the next run; unchanged runs embed nothing; schedules survive a
restart of the service. The same for edited and deleted files of a filesystem source."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from contextd.core.settings import Settings
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys
from tests.pg import scratch_database

INTERVAL = 5


@pytest.fixture
def pg() -> Iterator[tuple[str, Engine]]:
    with scratch_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE policies (id text PRIMARY KEY, body text, "
                              "updated_at timestamptz NOT NULL)"))
            conn.execute(text("INSERT INTO policies VALUES "
                              "('travel', 'The travel per diem is 55 euros per day.', now()), "
                              "('laptops', 'Laptops are replaced every four years.', now()), "
                              "('parking', 'Visitor parking is on level minus two.', now())"))
        yield url, engine
        engine.dispose()


def wait_for(check: Callable[[], Any], timeout: float, step: float = 0.25) -> tuple[Any, float]:
    """Poll ``check`` until it returns something truthy; (value, seconds waited)."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(step)


def served(client: httpx.Client, query: str) -> str:
    resp = client.post("/v1/context", json={"query": query, "user_id": "ann", "top_k": 10,
                                            "include_memory": False})
    assert resp.status_code == 200, resp.text
    return "\n".join(item["text"] for item in resp.json()["items"])


def runs(client: httpx.Client, cid: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v1/connectors/{cid}/runs")
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def test_interval_schedule_syncs_changes_and_deletions_and_survives_restart(
        make_runtime: Callable[..., Runtime], pg: tuple[str, Engine]) -> None:
    url, source = pg
    runtime = make_runtime(scheduler_enabled=True)
    k = keys(runtime.engine)
    config = {"url": url, "table": "policies", "key_column": "id",
              "updated_at_column": "updated_at", "text_template": "{body}",
              "default_acl": ["public"]}
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin, \
            server.client(k["agent"]) as agent:
        created = admin.post("/v1/connectors", json={
            "name": "policies", "kind": "sql", "config": config,
            "schedule": {"interval_seconds": INTERVAL, "jitter_seconds": 0}})
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        assert created.json()["status"]["next_run_at"] is not None
        # No sync call: the scheduler runs it.
        wait_for(lambda: "55 euros" in served(agent, "travel per diem"), 2 * INTERVAL)

        with source.begin() as conn:
            conn.execute(text("UPDATE policies SET body = 'The travel per diem is 70 euros "
                              "per day.', updated_at = now() WHERE id = 'travel'"))
        _, change_seconds = wait_for(lambda: "70 euros" in served(agent, "travel per diem"),
                                     INTERVAL + 3)
        assert "55 euros" not in served(agent, "travel per diem")

        with source.begin() as conn:
            conn.execute(text("DELETE FROM policies WHERE id = 'parking'"))
        _, delete_seconds = wait_for(
            lambda: "level minus two" not in served(agent, "visitor parking level"),
            INTERVAL + 3)
        print(f"\nchange served after {change_seconds:.1f}s, deletion gone after "
              f"{delete_seconds:.1f}s (interval {INTERVAL}s)")

        # A run with nothing new embeds nothing, and says so.
        def an_idle_run() -> bool:
            done = [r for r in runs(admin, cid) if r["status"] == "success"]
            return bool(done) and done[0]["chunks_embedded"] == 0 \
                and done[0]["records_pulled"] == 0
        wait_for(an_idle_run, INTERVAL + 3)
        history = runs(admin, cid)
        assert {r["trigger"] for r in history} == {"schedule"}
        assert admin.get(f"/v1/connectors/{cid}").json()["status"]["state"] == "healthy"
        count_before_restart = len(history)
    runtime.close()

    # Restart: a new process-level runtime on the same data; the schedule is rebuilt from
    # the connectors table and keeps syncing without any API call.
    settings = Settings(data_dir=runtime.settings.data_dir, scheduler_enabled=True)
    restarted = Runtime(settings, dense_encoder=runtime.dense)
    try:
        with LiveServer(restarted) as server, server.client(k["admin"]) as admin, \
                server.client(k["agent"]) as agent:
            with source.begin() as conn:
                conn.execute(text("INSERT INTO policies VALUES ('bikes', 'Bike leasing "
                                  "starts in March for all staff.', now())"))
            wait_for(lambda: "Bike leasing" in served(agent, "bike leasing"), INTERVAL + 3)
            assert len(runs(admin, cid)) > count_before_restart
    finally:
        restarted.close()


def test_filesystem_connector_on_a_schedule_follows_file_edits_and_deletions(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "expenses.md").write_text("# Expenses\n\nMeals are reimbursed up to 30 euros.\n")
    (docs / "badges.md").write_text("# Badges\n\nLost badges are replaced at reception.\n")
    runtime = make_runtime(scheduler_enabled=True, filesystem_allowed_roots=[tmp_path])
    k = keys(runtime.engine)
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin, \
            server.client(k["agent"]) as agent:
        created = admin.post("/v1/connectors", json={
            "name": "handbook", "kind": "filesystem",
            "config": {"path": str(docs), "default_acl": ["public"]},
            "schedule": {"interval_seconds": INTERVAL}})
        assert created.status_code == 201, created.text
        wait_for(lambda: "30 euros" in served(agent, "meal reimbursement limit"), 2 * INTERVAL)
        (docs / "expenses.md").write_text("# Expenses\n\nMeals are reimbursed up to 45 "
                                          "euros.\n")
        wait_for(lambda: "45 euros" in served(agent, "meal reimbursement limit"), INTERVAL + 3)
        (docs / "badges.md").unlink()
        wait_for(lambda: "reception" not in served(agent, "lost badge replacement"),
                 INTERVAL + 3)
