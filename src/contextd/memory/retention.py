"""Retention: expired interactions are purged by a periodic job.

:func:`contextd.memory.interactions.purge_expired` is the plain function any scheduler can
call; this module runs it every ``memory_purge_interval_seconds`` (0 turns it off) on an
APScheduler background thread inside the API process, and the CLI offers
``contextd memory purge`` for cron.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from contextd.core.settings import Settings
from contextd.core.store import VectorStore
from contextd.core.types import utcnow
from contextd.memory.interactions import purge_expired

log = logging.getLogger(__name__)

JOB_ID = "contextd.memory.purge_expired"


def run_purge(engine: Engine, store: VectorStore, settings: Settings) -> int:
    """One purge pass with the configured TTL; failures are logged, never raised (the next
    run retries)."""
    try:
        return purge_expired(engine, store, utcnow(), ttl_days=settings.interaction_ttl_days)
    except Exception as exc:  # the job must survive a database outage
        log.warning("memory purge failed; will retry", exc_info=exc,
                    extra={"event": "memory_purge_failed"})
        return 0


def start_purge_scheduler(engine: Engine, store: VectorStore,
                          settings: Settings) -> BackgroundScheduler | None:
    """Start the periodic purge, or return None when it is off (interval 0 or no TTL)."""
    interval = settings.memory_purge_interval_seconds
    if interval <= 0 or settings.interaction_ttl_days is None:
        return None
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(run_purge, "interval", seconds=interval, args=(engine, store, settings),
                      id=JOB_ID, max_instances=1, coalesce=True, next_run_time=utcnow())
    scheduler.start()
    log.info("memory purge scheduled", extra={"event": "memory_purge_scheduled",
                                              "interval_seconds": interval,
                                              "ttl_days": settings.interaction_ttl_days})
    return scheduler
