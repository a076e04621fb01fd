"""``GET /metrics``: Prometheus exposition (analysts and admins; scrape with a bearer key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contextd.api.deps import ReaderKey, RuntimeDep
from contextd.core.telemetry import REGISTRY, STORE_POINTS

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response, responses={401: {}, 403: {}})
def metrics(runtime: RuntimeDep, _: ReaderKey) -> Response:
    """Every contextd metric in the Prometheus text format."""
    STORE_POINTS.set(runtime.store.count())
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
