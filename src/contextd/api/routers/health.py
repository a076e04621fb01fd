"""Liveness and readiness probes.

These two are the only unauthenticated routes, on purpose: load balancers and
orchestrators call them without credentials. They reveal nothing but up/down.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from contextd.api.deps import RuntimeDep
from contextd.api.schemas import HealthOut
from contextd.core.errors import StoreUnreadable

router = APIRouter(tags=["health"])
# The dashboard login form must be reachable without a key (it is how a browser gets one).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/dashboard/login"})


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def readyz(runtime: RuntimeDep) -> HealthOut | JSONResponse:
    """Ready when the SQL database answers, the vector store opens, and the last check
    found the store holding every chunk the SQL documents name (else the reason, e.g.
    ``store_missing: ...; rebuild running (1/3 sources)``)."""
    checks: dict[str, str] = {}
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # the probe reports, it never raises
        checks["database"] = "unavailable"
    try:
        runtime.store.count()
        ready, detail = runtime.consistency.readiness()
        checks["vector_store"] = "ok" if ready else detail
    except StoreUnreadable:
        checks["vector_store"] = "store_unreadable: the vector store cannot read its data"
    except Exception:
        checks["vector_store"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    body = HealthOut(status="ok" if ok else "unavailable", checks=checks)
    return body if ok else JSONResponse(body.model_dump(), 503)
