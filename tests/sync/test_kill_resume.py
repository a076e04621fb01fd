"""Kill the service (SIGKILL) in the middle of a large scheduled sync, start it again:
the sync finishes with every record present exactly once, and no chunk whose work was
finished before the kill is embedded again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session, select

from contextd.core.settings import Settings
from contextd.runtime import Runtime
from contextd.state.tables import DocumentRow, SyncRunRow
from tests.conftest import REPO, _free_port
from tests.pg import scratch_database

ROWS = 1200
BATCH = 100
MARKER = re.compile(r"row-(\d{5})")


@pytest.fixture
def source_url() -> Iterator[str]:
    with scratch_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE facts (id int PRIMARY KEY, body text, "
                              "updated_at timestamptz NOT NULL)"))
            conn.execute(text(
                "INSERT INTO facts SELECT g, 'Fact row-' || lpad(g::text, 5, '0') || ': "
                "shipment ' || g || ' left depot ' || (g % 17) || ' on schedule.', "
                "timestamptz '2026-10-01 00:00+00' + g * interval '1 s' "
                "FROM generate_series(1, :n) g"), {"n": ROWS})
        engine.dispose()
        yield url


def start(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1",
           "CONTEXTD_DATA_DIR": str(data_dir), "CONTEXTD_SCHEDULER_ENABLED": "true",
           "CONTEXTD_LOG_LEVEL": "WARNING", "CONTEXTD_SYNC_LEASE_TTL_SECONDS": "6"}
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_counting.py")),
                             str(log), str(_free_port())], env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=(log.parent / "service.log").open("ab"))


def embedded_rows(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(m.group(1)) for line in log.read_text().splitlines()
            if (m := MARKER.search(line))]


def state(settings: Settings) -> tuple[list[SyncRunRow], set[int]]:
    engine = create_engine(settings.sql_url)
    try:
        with Session(engine) as session:
            run_rows = list(session.exec(select(SyncRunRow)))
            done = {int(MARKER.search(d.title).group(1))  # type: ignore[union-attr]
                    for d in session.exec(select(DocumentRow).where(
                        DocumentRow.source == "facts", DocumentRow.deleted == False))}  # noqa: E712
        return run_rows, done
    finally:
        engine.dispose()


def wait(predicate, timeout: float, proc: subprocess.Popen[bytes]):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, "the service exited on its own"
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s")


@pytest.mark.slow
def test_sigkill_mid_sync_then_restart_finishes_exactly_once(
        tmp_path: Path, source_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    setup = Runtime(settings)
    setup.migrate()
    setup.connectors.create(
        name="facts", kind="sql", schedule={"interval_seconds": 2},
        config={"url": source_url, "table": "facts", "key_column": "id",
                "updated_at_column": "updated_at", "text_template": "{body}",
                "title_column": "body", "default_acl": ["public"], "batch_size": BATCH})
    setup.close()
    log = tmp_path / "embedded.log"

    first = start(settings.data_dir, log)
    try:
        def mid_run() -> bool:
            runs, _ = state(settings)
            return any(r.status == "running" and r.records_pulled >= 3 * BATCH for r in runs)
        wait(mid_run, 180, first)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    runs, done_at_kill = state(settings)
    assert [r.status for r in runs] == ["running"]  # killed mid-run, not finished
    assert 3 * BATCH <= len(done_at_kill) < ROWS
    before_kill = embedded_rows(log)

    second = start(settings.data_dir, log)
    try:
        def finished() -> bool:
            runs, _ = state(settings)
            return any(r.status == "success" for r in runs)
        wait(finished, 300, second)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(10)
    runs, done = state(settings)
    after_restart = embedded_rows(log)[len(before_kill):]

    # Every record present exactly once.
    assert done == set(range(1, ROWS + 1))
    check = Runtime(settings)
    try:
        assert check.store.count("facts") == ROWS  # one chunk per row, no duplicates
    finally:
        check.close()
    # Nothing finished before the kill was embedded again; at most the batch in flight
    # (embedded but not yet written when the process died) was redone.
    assert not set(after_restart) & done_at_kill
    redone = set(after_restart) & set(before_kill)
    assert len(redone) <= BATCH
    assert len(after_restart) == len(set(after_restart))
    assert set(before_kill) | set(after_restart) == set(range(1, ROWS + 1))
    statuses = sorted(r.status for r in runs)
    assert "interrupted" in statuses and "success" in statuses
    print(f"\nkilled after {len(done_at_kill)}/{ROWS} rows stored; embedded before kill "
          f"{len(before_kill)}, after restart {len(after_restart)}, redone {len(redone)}")
