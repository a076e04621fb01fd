"""Record the outcome of every ``POST /v1/context`` call for the accessibility metrics.

``bundles_served`` only sees successful bundles; this pure ASGI middleware sits outermost
so it also sees 401/403/413/422/5xx answers, and writes one row (status, end-to-end
latency, request id) after the response has been sent.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.api.threads import in_thread
from contextd.state.requests import record_context_request

log = logging.getLogger(__name__)

CONTEXT_PATH = "/v1/context"


class ContextOutcomeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            engine = scope["app"].state.runtime.engine
            try:
                await in_thread(record_context_request, engine, status=status,
                                latency_ms=latency_ms, request_id=request_id)
            except Exception as exc:  # the agent already has its answer; never fail it
                log.error("context outcome not recorded", extra={
                    "event": "context_outcome_failed", "error": type(exc).__name__})
