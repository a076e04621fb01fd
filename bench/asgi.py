"""Drive an ASGI app directly, timing what a client would wait for.

An HTTP client library in the same process (httpx's ASGITransport) adds its own per-call
work (URL parsing, cookies, async-library sniffing: about 1-2 ms here) that is no part of
the service, and waits for background tasks that a real server runs after the response is
sent. This driver sends one request through the whole app (middleware, auth, validation,
routing, serialization) and stops the clock at the last body byte.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message


async def post_json(app: ASGIApp, path: str, body: dict[str, Any],
                    headers: dict[str, str]) -> tuple[int, bytes, float]:
    """POST ``body`` to ``path``; returns status, response body and seconds to last byte."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("bench", 80), "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    }
    sent = False
    status = 0
    chunks: list[bytes] = []
    done_at = 0.0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, done_at
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done_at = time.perf_counter()

    started = time.perf_counter()
    await app(scope, receive, send)
    return status, b"".join(chunks), done_at - started
