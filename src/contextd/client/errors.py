"""Errors of the Python client. The service's JSON error travels with the exception.

    ContextdAPIError            any non-2xx answer: status, code, message, details, body
    ├── AuthError               401 / 403
    ├── NotFoundError           404
    ├── ValidationError         422 (details name the field and, for filters, valid values)
    ├── RateLimitError          429 after the retries (retry_after seconds)
    └── UnavailableError        503 after the retries
"""

from __future__ import annotations

from typing import Any


class ContextdAPIError(Exception):
    """The service answered with an error; ``body`` is its JSON ``{"error": {...}}``."""

    def __init__(self, status: int, body: Any, *, retry_after: float | None = None) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.body = body
        self.code: str = str(error.get("code") or f"http_{status}")
        self.message: str = str(error.get("message") or body)
        self.details: Any = error.get("details")
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.message}")


class AuthError(ContextdAPIError):
    pass


class NotFoundError(ContextdAPIError):
    pass


class ValidationError(ContextdAPIError):
    pass


class RateLimitError(ContextdAPIError):
    pass


class UnavailableError(ContextdAPIError):
    pass


_BY_STATUS: dict[int, type[ContextdAPIError]] = {
    401: AuthError, 403: AuthError, 404: NotFoundError, 422: ValidationError,
    429: RateLimitError, 503: UnavailableError}


def error_for(status: int, body: Any, retry_after: float | None) -> ContextdAPIError:
    return _BY_STATUS.get(status, ContextdAPIError)(status, body, retry_after=retry_after)
