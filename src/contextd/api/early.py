"""Start embedding a ``POST /v1/context`` query as the request arrives.

The model is most of a context request's time, so everything else that can run beside it
should: routing, the other middleware, dependency solving, body validation, the key check
and the thread hops. This pure ASGI middleware sits outside the app's other layers and,
for a POST to ``/v1/context``

- whose bearer token this process admitted lately with a role that may call the route
  (``api.admitted``: a caller without a valid key never gets model time),
- whose body is declared (``Content-Length``) within the service's limit and arrives
  whole,
- whose JSON holds a query that could be served (a string, not blank, not too long),

starts the query's embedding, then hands the body on unchanged. The route takes the
started embedding (:func:`started_embedding`) only after the key has been checked in full;
on any refusal it is dropped here (cancelled if the model has not started it).

Measured before this moved here from a route dependency: about 1 ms of middleware,
routing and dependency solving ran before the model started (50k-chunk bench index).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.retrieval.service import StartedEmbedding
from contextd.runtime import Runtime

CONTEXT_PATH = "/v1/context"
_STATE_KEY = "contextd.early_embedding"


class EarlyEmbeddingMiddleware:
    """See the module docstring; ``roles`` are those that may call ``/v1/context``."""

    def __init__(self, app: ASGIApp, *, roles: Collection[str], max_bytes: int) -> None:
        self.app = app
        self.roles = frozenset(roles)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path") != CONTEXT_PATH):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        token, declared = _bearer_and_length(scope)
        if (token is None or declared is None or declared > self.max_bytes
                or state.admitted.role_of(token) not in self.roles):
            await self.app(scope, receive, send)
            return
        received: deque[Message] = deque()
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False) or len(body) > declared:
                break
        complete = received[-1]["type"] == "http.request" and not received[-1].get(
            "more_body", False) and len(body) == declared
        early = start_embedding(state.runtime, body) if complete else None
        scope.setdefault("state", {})[_STATE_KEY] = early

        async def replay() -> Message:
            return received.popleft() if received else await receive()

        try:
            await self.app(scope, replay, send)
        finally:
            if early is not None:
                early.vector.cancel()  # a no-op once it ran; frees the model thread if not


def started_embedding(scope: Scope) -> StartedEmbedding | None:
    """The embedding :class:`EarlyEmbeddingMiddleware` started for this request, if any."""
    early: StartedEmbedding | None = scope.get("state", {}).get(_STATE_KEY)
    return early


def start_embedding(runtime: Runtime, raw: bytes) -> StartedEmbedding | None:
    """The query's embedding, started, if the body looks valid enough to be served."""
    submit = getattr(runtime.dense, "submit_query", None)
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    query = body.get("query") if isinstance(body, dict) else None
    if submit is None or not isinstance(query, str):
        return None
    query = query.strip()
    if not query or len(query) > runtime.settings.max_query_chars:
        return None
    wall, cpu = time.perf_counter(), time.process_time()
    return StartedEmbedding(query, submit(query), wall_started=wall, cpu_started=cpu)


def _bearer_and_length(scope: Scope) -> tuple[str | None, int | None]:
    """The bearer token and the declared body length, as far as the headers say."""
    token = declared = None
    authorization: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and authorization is None:  # the first, as the route reads
            authorization = value
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                token = credentials.strip()
        elif name == b"content-length" and declared is None:
            try:
                declared = int(value)
            except ValueError:
                return None, None
    return token, declared
