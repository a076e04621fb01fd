"""Connector schedules on APScheduler (3.x), rebuilt from the connectors table on start.

The connectors table is the source of truth, so schedules survive a restart without a
second job store. Each job coalesces missed fires into one, tolerates a late start of up
to ``misfire_grace_seconds``, spreads its start by ``jitter_seconds``, and never overlaps
itself in this process (``max_instances=1``); across processes the run's database lease
keeps it single. Every replica re-reads the table every ``refresh_seconds``, so a
connector created, changed, paused or deleted through another replica is followed too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from contextd.core.types import utcnow
from contextd.state.tables import ConnectorRow

log = logging.getLogger(__name__)

DEFAULT_MISFIRE_GRACE_SECONDS = 300
_REFRESH_JOB = "contextd:refresh-schedules"


def _version(row: ConnectorRow) -> tuple[Any, ...]:
    """What decides a connector's job: a change to any of it means reschedule."""
    return (sorted((row.schedule or {}).items()), row.enabled)


def cron_trigger(expr: str, jitter: int | None = None) -> CronTrigger:
    """A UTC trigger for a five-field crontab line; ValueError when it is not one."""
    if len(expr.split()) != 5:
        raise ValueError("cron must have five fields: minute hour day month day_of_week")
    trigger = CronTrigger.from_crontab(expr, timezone=UTC)
    trigger.jitter = jitter or None
    return trigger


def build_trigger(schedule: Mapping[str, Any]) -> BaseTrigger | None:
    """The trigger for a stored schedule, or None when the connector runs on demand only."""
    jitter = int(schedule.get("jitter_seconds") or 0) or None
    if schedule.get("interval_seconds"):
        return IntervalTrigger(seconds=int(schedule["interval_seconds"]), timezone=UTC,
                               jitter=jitter)
    if schedule.get("cron"):
        return cron_trigger(str(schedule["cron"]), jitter)
    return None


class ConnectorScheduler:
    """Jobs keyed by connector id that call ``run(connector_id, trigger)`` in a pool."""

    def __init__(self, run: Callable[[str, str], Any], *, max_workers: int = 4) -> None:
        self._run = run
        self._max_workers = max_workers
        self._scheduler = self._new()
        self._versions: dict[str, tuple[Any, ...]] = {}

    def _new(self) -> BackgroundScheduler:
        return BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(self._max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1})

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self, rows: Iterable[ConnectorRow], *,
              reload: Callable[[], Iterable[ConnectorRow]] | None = None,
              refresh_seconds: float = 30.0) -> None:
        """Schedule every enabled connector, then start firing; ``reload`` (if given) is
        called every ``refresh_seconds`` to follow changes made by other replicas."""
        self.follow(rows)
        if reload is not None:
            self._scheduler.add_job(lambda: self.follow(reload()), "interval",
                                    seconds=refresh_seconds, id=_REFRESH_JOB,
                                    misfire_grace_time=None, coalesce=True, max_instances=1)
        self._scheduler.start()
        log.info("scheduler started", extra={"event": "scheduler",
                                             "jobs": len(self._scheduler.get_jobs())})

    def follow(self, rows: Iterable[ConnectorRow]) -> None:
        """Make the jobs match ``rows``: (re)schedule changed ones, drop deleted ones."""
        seen = set()
        for row in rows:
            seen.add(row.id)
            if self._versions.get(row.id) != _version(row):
                self.apply(row)
        for gone in set(self._versions) - seen:
            self.remove(gone)

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = self._new()  # a stopped APScheduler cannot start again
            self._versions.clear()

    def apply(self, row: ConnectorRow, *, run_first_now: bool = False) -> None:
        """(Re)schedule ``row`` from its stored schedule; paused or unscheduled: no job."""
        self.remove(row.id)
        self._versions[row.id] = _version(row)
        trigger = build_trigger(row.schedule or {})
        if trigger is None or not row.enabled:
            return
        extra: dict[str, Any] = {"next_run_time": utcnow()} if run_first_now else {}
        grace = int((row.schedule or {}).get("misfire_grace_seconds")
                    or DEFAULT_MISFIRE_GRACE_SECONDS)
        self._scheduler.add_job(self._run, trigger, args=[row.id, "schedule"], id=row.id,
                                name=row.name, misfire_grace_time=grace, coalesce=True,
                                max_instances=1, replace_existing=True, **extra)

    def remove(self, connector_id: str) -> None:
        self._versions.pop(connector_id, None)
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(connector_id)

    def next_run_at(self, connector_id: str) -> datetime | None:
        job = self._scheduler.get_job(connector_id)
        return job.next_run_time if job is not None else None
