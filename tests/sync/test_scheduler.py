"""Schedules as fire times computed from the connectors table, queued once per fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from contextd.state.connectors import create_connector
from contextd.state.db import make_engine, migrate
from contextd.state.sync_queue import queue_states
from contextd.state.tables import ConnectorRow
from contextd.sync.scheduler import jitter, latest_fire, next_run_at, queue_due

T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


def test_interval_fires_from_creation_and_collapses_missed_fires() -> None:
    every = {"interval_seconds": 60}
    assert latest_fire(every, T0, after=None, now=T0) == T0  # the first run is at creation
    assert latest_fire(every, T0, after=T0, now=T0 + timedelta(seconds=59)) is None
    # Down for ten minutes: the ten missed fires are one run, at the latest fire.
    assert latest_fire(every, T0, after=T0, now=T0 + timedelta(minutes=10, seconds=5)) == \
        T0 + timedelta(minutes=10)


def test_cron_fires_first_at_creation_then_on_its_times() -> None:
    daily = {"cron": "30 4 * * *"}
    assert latest_fire(daily, T0, after=None, now=T0) == T0
    assert latest_fire(daily, T0, after=T0, now=T0 + timedelta(hours=20)) is None
    assert latest_fire(daily, T0, after=T0, now=T0 + timedelta(days=3)) == datetime(
        2026, 11, 28, 4, 30, tzinfo=UTC)


def test_jitter_is_the_same_for_every_worker_and_bounded() -> None:
    shifts = {jitter("c1", T0 + timedelta(minutes=n), 20) for n in range(50)}
    assert all(timedelta(0) <= s <= timedelta(seconds=20) for s in shifts) and len(shifts) > 1
    assert jitter("c1", T0, 20) == jitter("c1", T0, 20)
    assert jitter("c1", T0, 0) == timedelta(0)


def test_each_fire_is_queued_once_across_workers_and_paused_ones_not_at_all(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    migrate(engine)
    try:
        for n, enabled in ((1, True), (2, False)):
            create_connector(engine, ConnectorRow(
                id=f"c{n}", name=f"c{n}", kind="sql", config={}, created_at=T0,
                schedule={"interval_seconds": 60}, enabled=enabled))
        create_connector(engine, ConnectorRow(id="c3", name="c3", kind="sql", config={},
                                              created_at=T0, schedule={}))
        # Three workers look at the same moment: one queues the fire, the others see it done.
        now = T0 + timedelta(seconds=1)
        assert [queue_due(engine, now=now) for _ in range(3)] == [["c1"], [], []]
        assert queue_states(engine)["c1"].state == "queued"
        assert set(queue_states(engine)) == {"c1"}
        later = T0 + timedelta(seconds=61)
        assert queue_due(engine, now=later) == ["c1"]  # joins the one still queued
        assert queue_states(engine)["c1"].position == 1
        row = ConnectorRow(id="c1", name="c1", kind="sql", config={}, created_at=T0,
                           schedule={"interval_seconds": 60})
        assert next_run_at(row, T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=120)
        assert next_run_at(row, None) == T0
    finally:
        engine.dispose()
