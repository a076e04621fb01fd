"""Map every error to ``{"error": {"code", "message", "details"}}`` with the right status.

No handler ever returns a stack trace; unexpected errors are logged with the request id
and answered with a generic 500.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from contextd.core import errors as e
from contextd.core.telemetry import ERRORS

log = logging.getLogger(__name__)

STATUS: dict[type[e.ContextdError], int] = {
    e.InvalidInput: 422,
    e.ConfigError: 422,
    e.PayloadTooLarge: 413,
    e.AuthenticationFailed: 401,
    e.PermissionDenied: 403,
    e.RateLimited: 429,
    e.NotFound: 404,
    e.Conflict: 409,
    e.Unavailable: 503,
    e.SourceAuthError: 502,
    e.TransientSourceError: 503,
    e.SourceError: 502,
}

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited",
               503: "unavailable"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "details": e.field_details(details, message)}}


def status_of(exc: e.ContextdError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


# Tags of discriminated unions in request bodies (``POST /v1/connectors`` picks its config
# model by ``kind``); pydantic puts the chosen tag in the error location, clients name fields.
UNION_TAGS: set[str] = set()


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts[:1] == ["body"]:
        parts = parts[1:]
        if len(parts) > 1 and parts[0] in UNION_TAGS:
            parts = parts[1:]
    return ".".join(parts) or "body"


def _error_field(err: Any) -> str:
    """The field an error concerns; a union's missing or unknown tag names the tag field."""
    field = _field(tuple(err.get("loc", ())))
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        tag = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
        field = tag if field == "body" else f"{field}.{tag}"
    return field


def error_answer(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, JSON error body and headers for ``exc``, counted in the error metric (an
    unexpected error is logged, never described). The handlers below answer with it, and
    so does the MCP ``get_context`` tool, which serves the route's work without the route."""
    if isinstance(exc, e.ContextdError):
        status = status_of(exc)
        ERRORS.labels(exc.code).inc()
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, e.RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return status, error_body(exc.code, exc.message, exc.details), headers
    if isinstance(exc, RequestValidationError | ValidationError):
        details = [{"field": _error_field(err), "message": err.get("msg", ""),
                    "type": err.get("type", "")} for err in exc.errors()]
        fields = ", ".join(d["field"] for d in details)
        ERRORS.labels("invalid_input").inc()
        return 422, error_body("invalid_input", f"invalid request: {fields}", details), None
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        ERRORS.labels(code).inc()
        return exc.status_code, error_body(code, str(exc.detail)), getattr(exc, "headers", None)
    if isinstance(exc, OperationalError | PoolTimeout):
        # The database could not be reached, refused the work, or every pooled connection
        # is busy (a slow or frozen database): retry later, not a bug.
        log.warning("database unavailable", extra={
            "event": "database_unavailable",
            "error": "pool_timeout" if isinstance(exc, PoolTimeout)
            else type(exc.orig).__name__})
        ERRORS.labels("unavailable").inc()
        return 503, error_body("unavailable", "the database is unavailable; retry "
                               "shortly"), {"Retry-After": "5"}
    log.error("unhandled error", exc_info=exc, extra={"event": "unhandled_error"})
    ERRORS.labels("internal_error").inc()
    return 500, error_body("internal_error", "internal server error"), None


async def _answer(_: Request, exc: Exception) -> JSONResponse:
    status, body, headers = error_answer(exc)
    return JSONResponse(body, status, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    for kind in (e.ContextdError, RequestValidationError, StarletteHTTPException,
                 OperationalError, PoolTimeout, Exception):
        app.add_exception_handler(kind, _answer)
