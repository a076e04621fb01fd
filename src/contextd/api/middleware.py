"""ASGI middleware: request ids and access logs, and a hard cap on request body size.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body limit is enforced while streaming,
before a large body is ever held in memory.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextlib import ExitStack
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.api.errors import error_body
from contextd.core.logging import request_id_var
from contextd.core.telemetry import HTTP_LATENCY, HTTP_REQUESTS, current_trace_id, tracer

log = logging.getLogger("contextd.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


async def send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_body("payload_too_large",
                               f"request body exceeds {self.max_bytes} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, error_body("bad_request", "bad Content-Length"))
                    return
                if declared > self.max_bytes:
                    await send_json(send, 413, too_large)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_json(send, 413, too_large)


class RequestContextMiddleware:
    """Give every request an id (or accept a sane ``X-Request-ID``), a server span whose trace
    id is returned as ``X-Trace-Id``, route-level metrics, and one access log line."""

    def __init__(self, app: ASGIApp, telemetry: bool = True) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        method = str(scope.get("method", ""))
        started = time.perf_counter()
        status = 500
        with ExitStack() as stack:
            server_span = None
            if self.telemetry:
                server_span = stack.enter_context(tracer.start_as_current_span(
                    f"HTTP {method}", kind=SpanKind.SERVER,
                    attributes={"http.request.method": method, "contextd.request_id": request_id}))
            trace_id = current_trace_id()
            extra_headers = [(b"x-request-id", request_id.encode())]
            if trace_id:
                extra_headers.append((b"x-trace-id", trace_id.encode()))

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), *extra_headers]
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = _route_of(scope)
                if server_span is not None:
                    server_span.update_name(f"HTTP {method} {route}")
                    server_span.set_attribute("http.route", route)
                    server_span.set_attribute("http.response.status_code", status)
                if self.telemetry:
                    HTTP_REQUESTS.labels(method, route, str(status)).inc()
                    HTTP_LATENCY.labels(method, route).observe(elapsed)
                log.info("request", extra={
                    "event": "http_request", "method": method, "path": scope.get("path"),
                    "route": route, "status": status, "latency_ms": round(elapsed * 1000, 3)})
                request_id_var.reset(token)


def _route_of(scope: Scope) -> str:
    """The matched route template (bounded label cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
