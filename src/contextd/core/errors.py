"""The one domain error hierarchy; ``api`` maps each ``code`` to an HTTP status.

    ContextdError
    ├── InvalidInput            bad request content (422)
    ├── PayloadTooLarge         request body past the limit (413)
    ├── AuthenticationFailed    missing, unknown or revoked key (401)
    ├── PermissionDenied        key lacks the role (403)
    ├── RateLimited             key over its rate limit; retry after ``retry_after`` s (429)
    ├── NotFound                (404)
    ├── Conflict                (409)
    ├── ConfigError             bad service or connector configuration (422 / startup)
    ├── Unavailable             a dependency is down; retry later (503)
    │   └── StoreUnreadable         the vector store's files cannot be read (503)
    └── SourceError             a connector's source failed
        ├── TransientSourceError    retry with backoff (timeouts, 5xx, 429)
        └── SourceAuthError         credentials rejected; fail fast, no retry
"""

from __future__ import annotations

from typing import Any


def field_details(details: Any, message: str) -> list[dict[str, Any]]:
    """``details`` as a list of ``{"field", "message", ...}``: one shape for every error.

    A dict becomes one entry; an entry without a message takes the error's own message;
    extra keys (``unknown_ids``, ``retry_after``) stay beside the two fixed ones.
    """
    if details is None:
        return []
    entries = details if isinstance(details, list) else [details]
    out: list[dict[str, Any]] = []
    for entry in entries:
        item = dict(entry) if isinstance(entry, dict) else {"message": str(entry)}
        item["field"] = str(item.get("field") or "")
        item["message"] = str(item.get("message") or message)
        out.append({"field": item.pop("field"), "message": item.pop("message"), **item})
    return out


class ContextdError(Exception):
    """Base of every error the service raises on purpose.

    ``details`` is always a list of ``{"field", "message"}`` entries (empty when the
    message says it all), so clients read one shape whatever the error.
    """

    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = field_details(details, message)


class InvalidInput(ContextdError):
    code = "invalid_input"


class PayloadTooLarge(ContextdError):
    code = "payload_too_large"


class AuthenticationFailed(ContextdError):
    code = "unauthenticated"


class PermissionDenied(ContextdError):
    code = "forbidden"


class RateLimited(ContextdError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class NotFound(ContextdError):
    code = "not_found"


class Conflict(ContextdError):
    code = "conflict"


class ConfigError(ContextdError):
    code = "invalid_config"


class Unavailable(ContextdError):
    code = "unavailable"


class StoreUnreadable(Unavailable):
    """The vector store answered with an error reading its own data (damaged files)."""

    code = "store_unreadable"


class SourceError(ContextdError):
    code = "source_error"


class TransientSourceError(SourceError):
    code = "source_transient"


class SourceAuthError(SourceError):
    code = "source_auth"
