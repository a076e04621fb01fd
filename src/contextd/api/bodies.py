"""JSON request bodies checked before anything parses them: nesting depth and Unicode.

Python's JSON decoder and pydantic recurse once per nesting level, so a body of ``[``
repeated 20,000 times overflows the stack, and a string holding a lone UTF-16 surrogate
(``"\\ud800"``) decodes to a ``str`` that cannot be encoded back, which breaks the
tokenizer and every UTF-8 writer downstream: either would be a 500. This pure ASGI
middleware sits outside every layer that reads the body, measures the depth with a
non-recursive scan and refuses

- a body nested deeper than ``max_depth`` with 400 ``body_too_deep``;
- a string (key or value) holding a lone surrogate with 422 ``invalid_input`` naming the
  field.

Bodies are bounded in size by ``BodyLimitMiddleware`` (inside); one over that size is
passed on unread, so that layer answers 413. Only JSON bodies (or bodies without a
content type, which FastAPI reads as JSON) are checked; forms and uploads are not JSON.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.api.errors import error_body
from contextd.api.middleware import send_json

_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON string token, or one bracket: brackets inside strings do not nest anything.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Where a surrogate can come from: a \uD800-\uDFFF escape, or its three UTF-8-style bytes
# (invalid UTF-8, yet Python's JSON decoder reads bytes with "surrogatepass").
_SURROGATE_SOURCE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (0 for a scalar), found
    without recursion; unbalanced input gets the depth it reached."""
    if b"[" not in body and b"{" not in body:
        return 0
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def lone_surrogate_at(value: Any) -> str | None:
    """The dotted path of the first string (key or value) holding a UTF-16 surrogate
    code point, or None. Iterative: ``value`` is already depth-checked, but need not be."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not key.isascii() and _SURROGATE.search(key):
                    return path or "body"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), child)
                         for i, child in enumerate(item))
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON


def check_body(body: bytes, max_depth: int) -> tuple[int, dict[str, Any]] | None:
    """``(status, error body)`` when ``body`` must be refused, else None (including for
    bodies that are not JSON at all: the route's own parsing names those)."""
    # Fewer opening brackets than the limit cannot nest past it: most bodies stop here.
    openers = body.count(b"[") + body.count(b"{")
    depth = json_depth(body) if openers > max_depth else 0
    if depth > max_depth:
        return 400, error_body("body_too_deep", f"request body is nested {depth} levels "
                               f"deep; at most {max_depth} are accepted",
                               {"field": "body", "limit": max_depth})
    if not _SURROGATE_SOURCE.search(body):
        return None  # most bodies: nothing in them can decode to a surrogate
    try:
        value = json.loads(body)
    except ValueError:  # not JSON or not UTF-8: left to the route's parser (422)
        return None
    field = lone_surrogate_at(value)
    if field is None:
        return None
    message = "a string holds a lone UTF-16 surrogate (e.g. \\ud800): not valid Unicode"
    return 422, error_body("invalid_input", f"invalid request: {field}", [
        {"field": field, "message": message, "type": "string_unicode"}])


class JsonBodyGuardMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") not in _METHODS
                or not _is_json(scope)):
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
            if not message.get("more_body", False) or len(body) > self.max_bytes:
                break
        complete = (received[-1]["type"] == "http.request"
                    and not received[-1].get("more_body", False))
        refusal = check_body(body, self.max_depth) if complete and body else None
        if refusal is not None:
            await send_json(send, *refusal)
            return

        async def replay() -> Message:
            return received.popleft() if received else await receive()

        await self.app(scope, replay, send)
