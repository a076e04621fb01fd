"""The MCP server on the service's own app: streamable HTTP at ``/mcp``.

- **Refused before any tool runs.** A gate in front of the MCP endpoint checks the bearer
  key against the key store and its role (agent or admin): a missing, unknown or revoked
  key is a 401 and another role a 403, as plain HTTP answers with the API's JSON error.
- **Tools are clients of the API.** Each tool call becomes one request to the ``/v1`` routes
  of this same app, in-process (no socket), carrying the caller's Authorization header;
  the route applies the key's policy, user binding, audit and rate limit as for any client.
- **Stateless.** Every MCP request stands alone (no session affinity), like the API, so
  API replicas behind a load balancer serve MCP too; answers are JSON, not SSE streams.

The session manager's task group is entered by the app's lifespan (``run_mcp``): a mounted
Starlette app's own lifespan never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.api.errors import error_body
from contextd.api.mcptools import FORWARDED, build_server
from contextd.api.threads import in_thread
from contextd.client.transport import AsyncClient
from contextd.core.errors import AuthenticationFailed
from contextd.runtime import Runtime
from contextd.state.keys import authenticate

MCP_PATH = "/mcp"
MCP_ROLES = frozenset({"agent", "admin"})
INTERNAL_BASE = "http://contextd.internal"


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


class KeyGate:
    """Admit an MCP HTTP request only with an active key of an MCP role; otherwise answer
    401/403 with the API's JSON error before the MCP layer sees the request."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
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
        return None


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
    server = build_server(api, _forwarded)
    # Builds the session manager; DNS-rebinding checks are off because every request
    # must carry a bearer key, which a rebinding page in a browser cannot attach.
    server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    handler = KeyGate(StreamableHTTPASGIApp(server.session_manager), runtime)
    app.router.routes.append(_NamedRoute(MCP_PATH, endpoint=handler,
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
