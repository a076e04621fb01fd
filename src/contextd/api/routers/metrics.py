"""``GET /metrics``: Prometheus exposition (analysts and admins; scrape with a bearer key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contextd.api.deps import ReaderKey, RuntimeDep
from contextd.core.telemetry import CONNECTOR_FAILING, CONNECTOR_LAG, REGISTRY, STORE_POINTS

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response, responses={401: {}, 403: {}})
def metrics(runtime: RuntimeDep, _: ReaderKey) -> Response:
    """Every contextd metric in the Prometheus text format."""
    STORE_POINTS.set(runtime.store.count())
    service = runtime.connectors
    CONNECTOR_LAG.clear()
    CONNECTOR_FAILING.clear()
    rows = service.all()
    for row, status in zip(rows, service.statuses(rows), strict=True):
        if status.lag_seconds is not None:
            CONNECTOR_LAG.labels(row.name).set(status.lag_seconds)
        CONNECTOR_FAILING.labels(row.name).set(1 if status.state == "failing" else 0)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
