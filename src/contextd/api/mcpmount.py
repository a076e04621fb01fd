"""The MCP server on the service's own app: streamable HTTP at ``/mcp``.

- **Refused before any tool runs.** A gate in front of the MCP endpoint checks the bearer
  key against the key store and its role (agent or admin): a missing, unknown or revoked
  key is a 401 and another role a 403, as plain HTTP answers with the API's JSON error.
- **Tools are clients of the API.** Each tool call becomes one request to the ``/v1`` routes
  of this same app, in-process (no socket), carrying the caller's Authorization header;
  the route applies the key's policy, user binding, audit and rate limit as for any client.
- **get_context, the hot path, skips the round trip.** The gate hands the key it verified
  to the tool as a Python object in the request's ASGI state (nothing a client sends can
  put it there), and the tool runs what ``POST /v1/context`` runs once its key is known
  (``serve_context_as``: rate limit, key limits, role, validation, policy, user binding,
  audit), answers errors as the API's handlers do, and leaves the route's background work
  (metering, bundle record, audit, the outcome row) until the MCP response is sent. One
  key lookup and two thread hops per call, as for ``POST /v1/context``.
- **Stateless.** Every MCP request stands alone (no session affinity), like the API, so
  API replicas behind a load balancer serve MCP too; answers are JSON, not SSE streams.

The session manager's task group is entered by the app's lifespan (``run_mcp``): a mounted
Starlette app's own lifespan never runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from fastapi import BackgroundTasks, FastAPI
from mcp.server.mcpserver import Context
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.api.deps import AGENT_ROLES
from contextd.api.errors import error_answer, error_body
from contextd.api.mcptools import FORWARDED, build_server
from contextd.api.outcomes import record_outcome
from contextd.api.ratelimit import RateLimiter
from contextd.api.routers.context import serve_context_as
from contextd.api.threads import in_thread
from contextd.client.calls import Call
from contextd.client.transport import AsyncClient
from contextd.core.errors import AuthenticationFailed, RateLimited
from contextd.core.logging import request_id_var
from contextd.runtime import Runtime
from contextd.state.keys import ApiKey, authenticate

MCP_PATH = "/mcp"
MCP_ROLES = AGENT_ROLES
INTERNAL_BASE = "http://contextd.internal"
# Set by the gate in an admitted request's ASGI state (objects, never parsed from input).
VERIFIED_KEY = "contextd.mcp.key"
AFTER_RESPONSE = "contextd.mcp.after_response"
log = logging.getLogger(__name__)


class InProcessTransport(httpx.AsyncBaseTransport):
    """httpx over an ASGI app in this event loop that answers as soon as the response
    body is complete. httpx's ``ASGITransport`` waits for the app to return, which
    includes the route's background tasks (audit, metering, bundle record); the HTTP
    server does not make a client wait for those, so neither does a tool call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": request.url.scheme,
            "path": request.url.path, "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query, "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 0), "server": (request.url.host, request.url.port or 80),
            "state": {},
        }
        sent_body = False
        disconnect = asyncio.Event()
        done = asyncio.Event()
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and not done.is_set():
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                done.set()
                disconnect.set()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and task.exception() is not None and not chunks:
            raise httpx.TransportError(f"in-process request failed: {task.exception()!r}")
        return httpx.Response(status, headers=headers, content=b"".join(chunks),
                              request=request)


class AfterResponse:
    """Work to run once the MCP response is sent, in the request's task, as Starlette runs
    a route's background tasks; added after that point, it runs at once in its own task."""

    def __init__(self) -> None:
        self._jobs: list[Callable[[], Awaitable[None]]] = []
        self._open = True
        self._late: set[asyncio.Task[None]] = set()

    def add(self, job: Callable[[], Awaitable[None]]) -> None:
        if self._open:
            self._jobs.append(job)
            return
        task = asyncio.create_task(self._run_one(job))
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def run(self) -> None:
        self._open = False
        with anyio.CancelScope(shield=True):  # a client gone away still leaves its audit rows
            for job in self._jobs:
                await self._run_one(job)
        self._jobs.clear()

    @staticmethod
    async def _run_one(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception:
            log.exception("MCP background work failed", extra={"event": "mcp_background_failed"})


class KeyGate:
    """Admit an MCP HTTP request only with an active key of an MCP role; otherwise answer
    401/403 with the API's JSON error before the MCP layer sees the request. An admitted
    request carries the key and its after-response work in its ASGI state."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self._admit(scope)
        if isinstance(admitted, JSONResponse):
            await admitted(scope, receive, send)
            return
        after = AfterResponse()
        state = scope.setdefault("state", {})
        state[VERIFIED_KEY], state[AFTER_RESPONSE] = admitted, after
        try:
            await self.app(scope, receive, send)
        finally:
            await after.run()

    async def _admit(self, scope: Scope) -> ApiKey | JSONResponse:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse(error_body(
                "unauthenticated", "missing API key: send 'Authorization: Bearer <key>'"),
                status_code=401, headers=challenge)
        settings = self.runtime.settings
        try:
            key = await in_thread(authenticate, self.runtime.engine, token.strip(),
                                  outage_grace=settings.db_outage_grace_seconds)
        except AuthenticationFailed as exc:
            return JSONResponse(error_body(exc.code, exc.message), status_code=401,
                                headers=challenge)
        if key.role not in MCP_ROLES:
            return JSONResponse(error_body(
                "forbidden", f"role {key.role!r} may not use MCP; needs one of "
                             f"{sorted(MCP_ROLES)}"), status_code=403)
        return key


class LocalContext:
    """get_context's ``POST /v1/context`` served in this process for the key the gate
    verified: the route's own code after authentication, in one thread hop."""

    def __init__(self, app: FastAPI, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, ctx: Context, call: Call[Any]) -> tuple[int, Any] | None:
        scope = getattr(ctx.request_context.request, "scope", None) or {}
        state = scope.get("state") or {}
        key, after = state.get(VERIFIED_KEY), state.get(AFTER_RESPONSE)
        if not isinstance(key, ApiKey) or not isinstance(after, AfterResponse):
            return None  # not through the gate: the in-process API authenticates it
        started = time.perf_counter()
        background = BackgroundTasks()
        limiter: RateLimiter = self.app.state.rate_limiter
        try:
            response = await in_thread(serve_context_as, json.dumps(call.json).encode(),
                                       self.runtime, limiter, key, background)
            status, body = response.status_code, json.loads(bytes(response.body))
        except Exception as exc:
            status, body, _ = error_answer(exc)
            if isinstance(exc, RateLimited):  # refused before the route admits the key
                return status, body
        latency_ms = (time.perf_counter() - started) * 1000
        after.add(background)
        record_outcome(self.runtime.engine, status, latency_ms, request_id_var.get() or "")
        return status, body


class _NamedRoute(Route):
    """A plain route that names itself in the scope as FastAPI's routes do, so request
    logs and metrics label MCP traffic ``/mcp`` rather than ``unmatched``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


def _forwarded(ctx: Any) -> dict[str, str] | None:
    headers = ctx.headers or {}
    return {name: headers[name] for name in FORWARDED if name in headers}


def install_mcp(app: FastAPI, runtime: Runtime) -> None:
    """Add the ``/mcp`` endpoint to ``app``; the app's lifespan must enter ``run_mcp``."""
    api = AsyncClient(http=httpx.AsyncClient(base_url=INTERNAL_BASE, timeout=60.0,
                                             transport=InProcessTransport(app)),
                      max_retries=0)
    server = build_server(api, _forwarded,
                          local_context=LocalContext(app, runtime))
    # Builds the session manager; DNS-rebinding checks are off because every request
    # must carry a bearer key, which a rebinding page in a browser cannot attach.
    server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    handler = KeyGate(StreamableHTTPASGIApp(server.session_manager), runtime)
    # First in the table: matching a path against every included router costs about a
    # millisecond per request, which /mcp would otherwise pay on each call, being last.
    app.router.routes.insert(0, _NamedRoute(MCP_PATH, endpoint=handler,
                                            methods=["GET", "POST", "DELETE"]))
    app.state.mcp_server = server


@asynccontextmanager
async def run_mcp(app: FastAPI) -> AsyncIterator[None]:
    """The MCP session manager's lifetime, inside the app's lifespan."""
    server = getattr(app.state, "mcp_server", None)
    if server is None:
        yield
        return
    async with server.session_manager.run():
        yield
