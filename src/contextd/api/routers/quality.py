"""``GET /v1/quality`` and ``GET /v1/quality/timeseries``: the five metrics for analysts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from contextd.api.deps import AnalystKey, RuntimeDep
from contextd.core.errors import InvalidInput
from contextd.core.types import as_utc, iso, utcnow
from contextd.quality.metrics import BUCKET_SIZE, quality_snapshot, quality_timeseries

router = APIRouter(prefix="/v1/quality", tags=["quality"])

MAX_HOURS = 24 * 90
MAX_BUCKETS = 2160


def window(hours: int, end: datetime | None) -> tuple[datetime, datetime]:
    try:
        stop = as_utc(end) if end else utcnow()
        return stop - timedelta(hours=hours), stop
    except OverflowError:  # an end near 0001-01-01 minus the window is out of range
        raise InvalidInput("end is too early for the window", details=[{"field": "query.end"}],
                           ) from None


@router.get("", responses={401: {}, 403: {}, 422: {}})
def get_quality(runtime: RuntimeDep, _: AnalystKey,
                hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24,
                end: datetime | None = None) -> dict[str, Any]:
    """Completeness, accuracy, relevance, freshness and accessibility over the last
    ``hours`` (ending at ``end``, default now), each figure with its definition."""
    start, stop = window(hours, end)
    snapshot = quality_snapshot(runtime.engine, start=start, end=stop,
                                lag_objective_seconds=runtime.settings
                                .quality_lag_objective_seconds)
    return {"generated_at": iso(utcnow()), **snapshot}


@router.get("/timeseries", responses={401: {}, 403: {}, 422: {}})
def get_quality_timeseries(runtime: RuntimeDep, _: AnalystKey,
                           bucket: Literal["hour", "day"] = "hour",
                           hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 48,
                           end: datetime | None = None) -> dict[str, Any]:
    """Headline figures per hourly or daily bucket, oldest first."""
    start, stop = window(hours, end)
    if (stop - start) / BUCKET_SIZE[bucket] > MAX_BUCKETS:
        raise InvalidInput(f"at most {MAX_BUCKETS} buckets", details=[{"field": "hours"}])
    series = quality_timeseries(runtime.engine, start=start, end=stop, bucket=bucket)
    return {"bucket": bucket, "window": {"start": iso(start), "end": iso(stop)},
            "series": series}
