"""Connector schedules, computed from the connectors table and queued as run requests.

A schedule fires at ``created_at + k * interval_seconds`` or at the UTC times of a
five-field ``cron`` line, each fire shifted by a fixed per-fire jitter in
``[0, jitter_seconds]`` (derived from the connector id and the fire time, so every worker
computes the same). The first fire of every schedule is at creation: a new connector
runs at once. A worker's housekeeping thread calls :func:`queue_due` every
``schedule_refresh_seconds``: for each enabled connector whose latest fire is past, it
advances the connector's schedule mark with a compare-and-set and, if it won, queues one
run. A fire is therefore queued exactly once across any number of workers, fires missed
while nothing ran collapse into one run, and nothing is discarded for being late: the
request waits in the queue until a worker is free.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine

from contextd.core.types import as_utc, utcnow
from contextd.state.connectors import list_connectors
from contextd.state.sync_queue import advance_mark, enqueue, schedule_marks
from contextd.state.tables import ConnectorRow

log = logging.getLogger(__name__)

_CRON_SCAN = 10_000  # fires looked at per call before jumping close to now


def cron_trigger(expr: str) -> CronTrigger:
    """A UTC trigger for a five-field crontab line; ValueError when it is not one."""
    if len(expr.split()) != 5:
        raise ValueError("cron must have five fields: minute hour day month day_of_week")
    return CronTrigger.from_crontab(expr, timezone=UTC)


def _next_fire(schedule: Mapping[str, Any], anchor: datetime,
               after: datetime) -> datetime | None:
    """The first nominal fire strictly after ``after`` (None: no schedule)."""
    if schedule.get("interval_seconds"):
        step = timedelta(seconds=int(schedule["interval_seconds"]))
        if after < anchor:
            return anchor
        return anchor + step * ((after - anchor) // step + 1)
    if schedule.get("cron"):
        fire = cron_trigger(str(schedule["cron"])).get_next_fire_time(
            None, after + timedelta(microseconds=1))
        return as_utc(fire) if fire is not None else None
    return None


def latest_fire(schedule: Mapping[str, Any], anchor: datetime, *, after: datetime | None,
                now: datetime) -> datetime | None:
    """The latest nominal fire in ``(after, now]`` (``after`` None: since ``anchor``)."""
    start = anchor - timedelta(microseconds=1) if after is None else after
    if schedule.get("interval_seconds"):
        step = timedelta(seconds=int(schedule["interval_seconds"]))
        if now < anchor:
            return None
        latest = anchor + step * ((now - anchor) // step)
        return latest if latest > start else None
    found: datetime | None = None
    cursor, scanned = start, 0
    if after is None:  # the first run is at creation, whatever the cron line says
        if now < anchor:
            return None
        found = cursor = anchor
    while (fire := _next_fire(schedule, anchor, cursor)) is not None and fire <= now:
        found, cursor, scanned = fire, fire, scanned + 1
        if scanned == _CRON_SCAN:
            cursor = max(cursor, now - timedelta(days=1))
    return found


def jitter(connector_id: str, fire: datetime, jitter_seconds: int) -> timedelta:
    """The same shift of this fire for every worker: hash of the id and the fire time."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{connector_id}@{fire.isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:4], "big") % (jitter_seconds + 1))


def next_run_at(row: ConnectorRow, mark: datetime | None) -> datetime | None:
    """When the connector's next scheduled run will be queued (None: paused or on demand)."""
    schedule = row.schedule or {}
    if not row.enabled or not schedule:
        return None
    anchor = as_utc(row.created_at)
    fire = anchor if mark is None else _next_fire(schedule, anchor, mark)
    if fire is None:
        return None
    return fire + jitter(row.id, fire, int(schedule.get("jitter_seconds") or 0))


def queue_due(engine: Engine, *, now: datetime | None = None) -> list[str]:
    """Queue one run for every enabled connector whose latest fire is due and not yet
    queued by any worker; the ids of the connectors queued by this call."""
    now = now or utcnow()
    marks = schedule_marks(engine)
    queued: list[str] = []
    for row in list_connectors(engine):
        schedule = row.schedule or {}
        if not row.enabled or not schedule:
            continue
        mark = marks.get(row.id)
        fire = latest_fire(schedule, as_utc(row.created_at), after=mark, now=now)
        if fire is None or fire + jitter(row.id, fire,
                                         int(schedule.get("jitter_seconds") or 0)) > now:
            continue
        if advance_mark(engine, row.id, due_at=fire, previous=mark):
            enqueue(engine, connector_id=row.id, trigger="schedule")
            queued.append(row.id)
    if queued:
        log.info("scheduled runs queued", extra={"event": "schedule_due",
                                                 "connectors": len(queued)})
    return queued
