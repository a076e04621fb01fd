"""Record the outcome of ``POST /v1/context`` calls for the accessibility metrics.

``bundles_served`` only sees successful bundles; this pure ASGI middleware sits outermost
so it also sees 403/413/422/429/5xx answers, and adds one row (status, end-to-end
latency, request id) after the response has been sent, for calls whose key was
authenticated; the row is queued for the deferred writer (``state.deferred``). A call
refused before a key was known (401, or a body over the service limit) adds nothing: a
flood of such calls must not become a flood of database writes. It is counted in
``contextd_requests_rejected_total{reason}`` and one in ``_LOG_EVERY`` is logged.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.core.telemetry import REQUESTS_REJECTED
from contextd.state.requests import record_context_request

log = logging.getLogger(__name__)

CONTEXT_PATH = "/v1/context"
AUTHENTICATED = "api_key_id"  # set in the request state by the key dependency
_REASONS = {401: "bad_key", 413: "too_large", 400: "bad_request"}
_LOG_EVERY = 100


class ContextOutcomeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path", "").rstrip("/") != CONTEXT_PATH):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = ""

        async def watch(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers", []))
                request_id = headers.get(b"x-request-id", b"").decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            if scope.get("state", {}).get(AUTHENTICATED):
                record_outcome(scope["app"].state.runtime.engine, status, latency_ms,
                               request_id)
            else:
                self._reject(status, request_id)

    def _reject(self, status: int, request_id: str) -> None:
        reason = _REASONS.get(status, "other")
        REQUESTS_REJECTED.labels(reason).inc()
        self._rejected += 1
        if self._rejected % _LOG_EVERY == 1:
            log.warning("context call refused before authentication", extra={
                "event": "request_rejected", "reason": reason, "status": status,
                "request_id": request_id, "sampled_one_in": _LOG_EVERY})


def record_outcome(engine: Engine, status: int, latency_ms: float, request_id: str) -> None:
    """One authenticated context call's outcome row, queued for the deferred writer (no
    SQL here; a row the database refuses is logged and counted there)."""
    record_context_request(engine, status=status, latency_ms=latency_ms,
                           request_id=request_id)
