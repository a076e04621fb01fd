"""``GET /v1/audit``: the append-only audit log, for admins and analysts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from contextd.api.deps import ReaderKey, RuntimeDep
from contextd.api.schemas import AuditEventOut, AuditPageOut
from contextd.core.errors import InvalidInput
from contextd.core.types import as_utc
from contextd.state.audit import MAX_PAGE, AuditFilter, query

router = APIRouter(prefix="/v1", tags=["audit"])
Text = Annotated[str | None, Query(min_length=1, max_length=200)]
Instant = Annotated[str | None, Query(
    pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$",
    description="ISO 8601 date or date-time; without a zone it is UTC.")]


def _instant(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(f"{name} is not a valid date-time",
                           details=[{"field": f"query.{name}"}]) from None


@router.get("/audit", response_model=AuditPageOut,
            responses={401: {}, 403: {}, 422: {}, 429: {}})
def get_audit(runtime: RuntimeDep, _: ReaderKey, actor: Text = None, action: Text = None,
              user_id: Text = None, outcome: Text = None,
              since: Instant = None, until: Instant = None,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
              before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> AuditPageOut:
    """Entries newest first. ``actor`` is a key id or name; ``action`` is exact or a prefix
    ending in ``.`` (``key.``); ``since`` inclusive, ``until`` exclusive; page with
    ``before_id``."""
    start, end = _instant("since", since), _instant("until", until)
    if start and end and start >= end:
        raise InvalidInput("since must be before until", details=[{"field": "query.since"}])
    rows, next_id = query(runtime.engine, AuditFilter(
        actor=actor, action=action, user_id=user_id, outcome=outcome, since=start,
        until=end), limit=limit, before_id=before_id)
    return AuditPageOut(events=[AuditEventOut.model_validate(r, from_attributes=True)
                                for r in rows], next_before_id=next_id)
