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
    └── SourceError             a connector's source failed
        ├── TransientSourceError    retry with backoff (timeouts, 5xx, 429)
        └── SourceAuthError         credentials rejected; fail fast, no retry
"""

from __future__ import annotations

from typing import Any


class ContextdError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


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


class SourceError(ContextdError):
    code = "source_error"


class TransientSourceError(SourceError):
    code = "source_transient"


class SourceAuthError(SourceError):
    code = "source_auth"
