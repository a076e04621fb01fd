"""An httpx client for SaaS sources that retries what is worth retrying, and only that.

Timeouts, connection resets, 5xx and 429 are retried with exponential backoff plus jitter
(tenacity), a 429's or 503's ``Retry-After`` (seconds or an HTTP date) honoured up to a
cap, within a maximum number of attempts and a maximum total time. 401/403 raise
:class:`SourceAuthError` at once (retrying a wrong token only gets the account locked);
other 4xx raise :class:`SourceError`. Request headers (which carry the tokens) are never
logged.

Every connection goes through the outbound policy (:mod:`contextd.connectors.limits`):
the host is resolved, every address checked, and the request sent to a checked address
(TLS still verifies the host name). Redirects are never followed, so a reply cannot send
the token elsewhere. Error messages keep the status and, at most, the API's error code
(one the APIs document, such as ``MALFORMED_QUERY``), never text from the reply: the
message ends up in ``last_error`` and quarantine, which analysts read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from contextd.connectors.limits import OutboundPolicy, SourceTargetUnresolved
from contextd.core.errors import SourceAuthError, SourceError, TransientSourceError
from contextd.core.telemetry import SOURCE_HTTP_RETRIES, span

log = logging.getLogger(__name__)

# Error codes the SaaS APIs document (OAuth 2.0, HubSpot categories, Salesforce
# errorCodes). Only these are kept from a reply: an unknown code is reply content.
KNOWN_ERROR_CODES = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_grant_type", "invalid_scope", "access_denied", "invalid_token",
    "VALIDATION_ERROR", "INVALID_AUTHENTICATION", "EXPIRED_AUTHENTICATION", "MISSING_SCOPES",
    "RATE_LIMITS", "OBJECT_NOT_FOUND", "INVALID_PARAMS", "CONFLICT", "BAD_REQUEST",
    "INVALID_SESSION_ID", "MALFORMED_QUERY", "REQUEST_LIMIT_EXCEEDED", "INVALID_FIELD",
    "INVALID_TYPE", "INVALID_QUERY_LOCATOR", "INVALID_QUERY_FILTER_OPERATOR",
    "API_DISABLED_FOR_ORG", "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY",
    "NOT_FOUND", "QUERY_TIMEOUT", "SERVER_UNAVAILABLE", "API_CURRENTLY_DISABLED",
    "INVALID_OPERATION_WITH_EXPIRED_PASSWORD", "FUNCTIONALITY_NOT_ENABLED"})


class RetryPolicy(BaseModel):
    """How hard to try before a run gives up on a source (part of each SaaS config)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=6, ge=1, le=20,
        description="Attempts per request.")
    max_seconds: float = Field(default=120.0, gt=0, le=3600,
        description="Longest time spent on one request, retries included.")
    initial_backoff_seconds: float = Field(default=0.5, ge=0, le=60,
        description="First backoff delay.")
    max_backoff_seconds: float = Field(default=30.0, ge=0, le=600,
        description="Longest backoff delay.")
    max_retry_after_seconds: float = Field(default=60.0, ge=0, le=3600,
        description="Longest Retry-After honoured; a longer one fails the request.")
    timeout_seconds: float = Field(default=30.0, gt=0, le=600,
        description="Seconds to wait for one response.")


class RetryableResponse(TransientSourceError):
    """A transient failure, with the wait the server asked for (if any)."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 reason: str = "transport") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent/bad."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def api_message(response: httpx.Response) -> str:
    """The reply reduced to what is safe to store: the status phrase and, when the body
    names a documented one (:data:`KNOWN_ERROR_CODES`), the API's error code; never other
    reply text."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    codes: list[str] = []
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            for key in ("errorCode", "category", "error", "code"):
                value = item.get(key)
                if isinstance(value, str) and value in KNOWN_ERROR_CODES \
                        and value not in codes:
                    codes.append(value)
                    break
    phrase = response.reason_phrase or "error"
    return f"{phrase} ({', '.join(codes[:3])})" if codes else phrase


class GuardedTransport(httpx.BaseTransport):
    """Checks each request's host against the outbound policy before it is sent.

    Without an ``inner`` transport the request goes to the checked address itself (the
    name is kept for the Host header and TLS), so DNS cannot answer differently between
    the check and the connection. An ``inner`` transport (tests) gets the request as is.
    """

    def __init__(self, policy: OutboundPolicy, source: str, *,
                 inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        self.source = source
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = self.policy.connectable(url.host, port, source=self.source)
        except SourceTargetUnresolved as exc:
            raise httpx.ConnectError(exc.message, request=request) from None
        if isinstance(self.inner, httpx.HTTPTransport) and addresses and \
                str(addresses[0]) != url.host.strip("[]"):
            request.url = url.copy_with(host=str(addresses[0]))
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class HttpSource:
    """One SaaS API: base URL, auth headers, the retry policy and the error mapping.

    ``set_header`` lets a connector swap a refreshed OAuth token in between requests.
    """

    def __init__(self, *, source: str, base_url: str, policy: RetryPolicy,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 outbound: OutboundPolicy | None = None) -> None:
        self.source = source
        self.policy = policy
        guarded = GuardedTransport(outbound or OutboundPolicy(), source, inner=transport)
        self.client = httpx.Client(base_url=base_url, headers=dict(headers or {}),
                                   timeout=policy.timeout_seconds, transport=guarded,
                                   follow_redirects=False)

    def set_header(self, name: str, value: str) -> None:
        self.client.headers[name] = value

    def close(self) -> None:
        self.client.close()

    def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a 2xx answer, retrying transient failures per policy."""
        policy = self.policy
        exponential = wait_exponential_jitter(multiplier=policy.initial_backoff_seconds,
                                              max=policy.max_backoff_seconds,
                                              jitter=policy.initial_backoff_seconds)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = getattr(exc, "retry_after", None)
            if asked is not None:
                return float(min(asked, policy.max_retry_after_seconds))
            return float(exponential(state))

        retrying = Retrying(
            retry=retry_if_exception_type(RetryableResponse),
            stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_seconds),
            wait=wait, before_sleep=self._before_sleep(method, url), reraise=True,
            sleep=time.sleep)
        with span("source.http", **{"contextd.connector": self.source,
                                    "http.request.method": method}) as current:
            body = retrying(self._once, method, url, **kwargs)
            current.set_attribute("contextd.attempts",
                                  retrying.statistics.get("attempt_number", 1))
            return body

    def _before_sleep(self, method: str, url: str) -> Any:
        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = getattr(exc, "reason", "transport")
            SOURCE_HTTP_RETRIES.labels(self.source, reason).inc()
            log.warning("source request retried", extra={
                "event": "source_retry", "connector": self.source, "method": method,
                "path": url.split("?", 1)[0], "attempt": state.attempt_number,
                "reason": reason, "wait_seconds": round(state.upcoming_sleep, 3),
                "error": str(exc)})
        return log_retry

    def _once(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableResponse(f"{self.source}: timeout on {method} {_path(url)}: {exc}",
                                    reason="timeout") from exc
        except httpx.TransportError as exc:  # connection refused/reset, protocol errors
            raise RetryableResponse(f"{self.source}: {type(exc).__name__} on {method} "
                                    f"{_path(url)}: {exc}", reason="connection") from exc
        status = response.status_code
        if status < 300:
            try:
                return response.json() if response.content else None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.source}: {method} {_path(url)} answered {status} "
                                  "with a body that is not JSON") from exc
        message = api_message(response)
        where = f"{self.source}: {method} {_path(url)} answered {status}"
        if status == 429 or status >= 500:
            raise RetryableResponse(
                f"{where}: {message}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                reason="rate_limited" if status == 429 else "server_error")
        if 300 <= status < 400:
            raise SourceError(f"{where} (a redirect, not followed)")
        if status == 403 and "REQUEST_LIMIT_EXCEEDED" in message:
            # Salesforce's exhausted daily API quota: not a credential problem, and
            # retrying within the run cannot help.
            raise SourceError(f"{where} (API quota exhausted, not retried): {message}")
        if status in (401, 403):
            raise SourceAuthError(f"{where} (credentials rejected, not retried): {message}")
        raise SourceError(f"{where}: {message}")


def _path(url: str) -> str:
    """A URL without its query string (queries may hold SOQL, never worth a log line)."""
    return url.split("?", 1)[0]
