"""Retention: interactions past their TTL are purged (rows, entity links and vectors) by the
plain function, the CLI, and the scheduler job in the app."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from contextd.cli import main
from contextd.core.settings import Settings
from contextd.core.types import utcnow
from contextd.memory.interactions import (
    NewInteraction,
    memory_source,
    purge_expired,
    record_interaction,
)
from contextd.memory.retention import start_purge_scheduler
from contextd.runtime import Runtime
from contextd.state.tables import InteractionEntity, InteractionRow
from tests.conftest import LiveServer
from tests.factories import keys

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _record(runtime: Runtime, user: str, days_ago: float) -> str:
    return record_interaction(
        runtime.memory_engine, runtime.memory_store, runtime.dense, runtime.sparse,
        NewInteraction(user_id=user, query=f"question from {days_ago} days ago",
                       entities=["deal:D-101"], created_at=NOW - timedelta(days=days_ago))).id


def _ids(runtime: Runtime) -> set[str]:
    with Session(runtime.memory_engine) as session:
        return set(session.exec(select(InteractionRow.id)))


def test_purge_expired_removes_rows_links_and_vectors_past_the_ttl(mem_runtime: Runtime) -> None:
    old = {_record(mem_runtime, "alice", 40), _record(mem_runtime, "bob", 31)}
    kept = {_record(mem_runtime, "alice", 29), _record(mem_runtime, "alice", 1)}
    store = mem_runtime.memory_store
    assert purge_expired(mem_runtime.memory_engine, store, NOW, ttl_days=30) == 2
    assert _ids(mem_runtime) == kept
    assert store.existing_ids([*old, *kept]) == kept
    assert store.count(memory_source("bob")) == 0
    with Session(mem_runtime.memory_engine) as session:
        links = set(session.exec(select(InteractionEntity.interaction_id)))
    assert links == kept
    assert purge_expired(mem_runtime.memory_engine, store, NOW, ttl_days=30) == 0


def test_cli_memory_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch, db_url: str,
                          make_runtime: Callable[..., Runtime]) -> None:
    from contextd.core.settings import get_settings

    runtime = make_runtime(database_url=db_url)
    old, new = _record(runtime, "alice", 100), _record(runtime, "alice", 5)
    data_dir = runtime.settings.data_dir
    runtime.close()
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CONTEXTD_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["memory", "purge", "--ttl-days", "30", "--now", NOW.isoformat()]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out  # JSON log lines, then the command's JSON result
    assert json.loads(out[out.index('{\n  "removed"'):])["removed"] == 1
    reopened = Runtime(Settings(data_dir=data_dir, database_url=db_url),
                       dense_encoder=runtime.dense)
    try:
        assert _ids(reopened) == {new}
        assert reopened.memory_store.existing_ids([old, new]) == {new}
    finally:
        reopened.close()


def test_scheduler_job_purges_and_is_off_when_asked(mem_runtime: Runtime) -> None:
    settings = mem_runtime.settings.model_copy(update={"memory_purge_interval_seconds": 0})
    assert start_purge_scheduler(mem_runtime.memory_engine, mem_runtime.memory_store,
                                 settings) is None
    expired = record_interaction(
        mem_runtime.memory_engine, mem_runtime.memory_store, mem_runtime.dense,
        mem_runtime.sparse, NewInteraction(user_id="alice", query="ancient",
                                           created_at=utcnow() - timedelta(days=400))).id
    fresh = _record(mem_runtime, "alice", 0)  # dated NOW (2026-11-25): inside a 365-day TTL
    settings = mem_runtime.settings.model_copy(update={"memory_purge_interval_seconds": 3600,
                                                       "interaction_ttl_days": 365.0})
    scheduler = start_purge_scheduler(mem_runtime.memory_engine, mem_runtime.memory_store,
                                      settings)
    assert scheduler is not None
    try:
        deadline = time.monotonic() + 30
        while expired in _ids(mem_runtime):  # the first run starts at once
            assert time.monotonic() < deadline, "purge job never ran"
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert _ids(mem_runtime) == {fresh}
    assert mem_runtime.memory_store.existing_ids([expired, fresh]) == {fresh}


def test_app_runs_the_purge_job(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(memory_purge_interval_seconds=1, interaction_ttl_days=7)
    agent = keys(runtime.engine)["agent"]
    with LiveServer(runtime) as server, server.client(agent) as client:
        resp = client.post("/v1/interactions", json={
            "user_id": "alice", "query": "old question",
            "created_at": (utcnow() - timedelta(days=8)).isoformat()})
        assert resp.status_code == 201
        deadline = time.monotonic() + 30
        while client.get("/v1/interactions", params={"user_id": "alice"}).json()["items"]:
            assert time.monotonic() < deadline, "the app's purge job never removed it"
            time.sleep(0.2)
    with Session(runtime.memory_engine) as session:
        assert session.exec(select(func.count()).select_from(InteractionRow)).one() == 0
