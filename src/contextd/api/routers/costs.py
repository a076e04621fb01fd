"""``GET /v1/costs``: daily cost totals, and the per-request rows they are summed from."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from contextd.api.deps import ReaderKey, RuntimeDep
from contextd.state.costs import cost_events, daily_costs

router = APIRouter(prefix="/v1/costs", tags=["costs"])


@router.get("", responses={401: {}, 403: {}, 422: {}})
def get_costs(runtime: RuntimeDep, _: ReaderKey,
              days: Annotated[int, Query(ge=1, le=366)] = 7) -> dict[str, Any]:
    """Embedding tokens, embedding CPU seconds and tokens served per day, kind and subject
    (agent key for context requests, connector for sync runs)."""
    rows = daily_costs(runtime.engine, days=days)
    totals = {name: sum(r[name] for r in rows)
              for name in ("events", "embed_tokens", "embed_cpu_seconds", "served_tokens")}
    return {"days": days, "daily": rows, "totals": totals}


@router.get("/events", responses={401: {}, 403: {}, 422: {}})
def get_cost_events(runtime: RuntimeDep, _: ReaderKey, day: date,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> dict[str, Any]:
    """Every cost row of ``day`` (per context request, per sync run)."""
    rows = cost_events(runtime.engine, day=day.isoformat(), limit=limit, offset=offset)
    return {"day": day.isoformat(), "limit": limit, "offset": offset,
            "events": [r.model_dump(mode="json") for r in rows]}
