"""APScheduler wiring: interval and cron triggers, pause/resume, job options."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from contextd.state.tables import ConnectorRow
from contextd.sync.scheduler import ConnectorScheduler, build_trigger


def row(schedule: dict[str, object], enabled: bool = True) -> ConnectorRow:
    return ConnectorRow(id="c1", name="c", kind="sql", config={}, schedule=schedule,
                        enabled=enabled)


def test_interval_fires_pause_stops_resume_restarts() -> None:
    fired: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def run(connector_id: str, trigger: str) -> None:
        with lock:
            fired.append((connector_id, trigger, time.monotonic()))

    scheduler = ConnectorScheduler(run, max_workers=2)
    scheduler.start([row({"interval_seconds": 1})])
    try:
        time.sleep(2.6)
        with lock:
            assert len(fired) >= 2 and {f[:2] for f in fired} == {("c1", "schedule")}
        job = scheduler._scheduler.get_job("c1")
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == 300
        scheduler.apply(row({"interval_seconds": 1}, enabled=False))  # pause
        assert scheduler.next_run_at("c1") is None
        time.sleep(0.3)
        with lock:
            count = len(fired)
        time.sleep(1.5)
        with lock:
            assert len(fired) == count
        scheduler.apply(row({"interval_seconds": 1}), run_first_now=True)  # resume
        time.sleep(0.5)
        with lock:
            assert len(fired) > count
    finally:
        scheduler.shutdown()
    assert not scheduler.running


def test_cron_and_jitter_triggers() -> None:
    trigger = build_trigger({"cron": "30 4 * * *", "jitter_seconds": 20})
    assert trigger is not None and trigger.jitter == 20
    after = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    base = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, after)
    assert fire is not None and 0 <= (fire - base).total_seconds() <= 20  # jittered start
    assert build_trigger({}) is None
    interval = build_trigger({"interval_seconds": 5, "jitter_seconds": 2})
    assert interval is not None and interval.jitter == 2


def test_scheduler_can_start_again_after_shutdown() -> None:
    scheduler = ConnectorScheduler(lambda _id, _trigger: None)
    scheduler.start([row({"interval_seconds": 60})])
    scheduler.shutdown()
    scheduler.start([row({"interval_seconds": 60})])
    try:
        assert scheduler.next_run_at("c1") is not None
    finally:
        scheduler.shutdown()


def test_follows_changes_made_by_another_replica() -> None:
    """Another replica edits the connectors table; this scheduler follows on refresh."""
    table = [row({"interval_seconds": 60})]
    scheduler = ConnectorScheduler(lambda _id, _trigger: None)
    scheduler.start(list(table), reload=lambda: list(table), refresh_seconds=1)
    try:
        assert scheduler.next_run_at("c1") is not None
        table[0] = row({"interval_seconds": 60}, enabled=False)  # paused elsewhere
        time.sleep(1.6)
        assert scheduler.next_run_at("c1") is None
        other = ConnectorRow(id="c2", name="d", kind="sql", config={},
                             schedule={"cron": "0 * * * *"})
        table[:] = [row({"interval_seconds": 60}), other]  # resumed, and a new one
        time.sleep(1.6)
        assert scheduler.next_run_at("c1") is not None
        assert scheduler.next_run_at("c2") is not None
        table[:] = [other]  # c1 deleted elsewhere
        time.sleep(1.6)
        assert scheduler.next_run_at("c1") is None
    finally:
        scheduler.shutdown()
