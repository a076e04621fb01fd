"""Retry policy for sources: transient errors back off exponentially with jitter.

Transient means a ``TransientSourceError`` (timeouts, resets, 5xx, 429: connectors and the
HTTP helper raise it) or a raw ``TimeoutError`` / ``ConnectionError``. A
``retry_after`` attribute on the error (seconds, from a 429/503 ``Retry-After``) is honoured
as a minimum wait. Auth and config errors are never retried: a wrong password must fail
once, with its message, not hammer the source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contextd.core.errors import TransientSourceError
from contextd.core.telemetry import SYNC_RETRIES

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientSourceError | TimeoutError | ConnectionError)


# Errors that mean the code is wrong: retrying the same input cannot help.
_BUGS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError,
         NotImplementedError, ImportError, RecursionError, Warning)


def is_transient_internal(exc: BaseException) -> bool:
    """An unexpected error inside a run that may pass on a retry (a database hiccup, a
    tokenizer or thread race, an OS error), as opposed to a bug in the code."""
    return isinstance(exc, Exception) and not isinstance(exc, _BUGS)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure of one run step."""

    attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 60.0
    jitter_seconds: float = 1.0

    def wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(multiplier=self.initial_seconds, max=self.max_seconds,
                                          jitter=self.jitter_seconds)(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            return float(min(max(backoff, retry_after), self.max_seconds))
        return float(backoff)

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based) of a whole run."""
        return float(min(self.max_seconds, self.initial_seconds * 2 ** (attempt - 1)))

    def retrying(self, what: str, **log_fields: Any) -> Retrying:
        """A tenacity ``Retrying`` that logs each retry as an ``event: sync_retry`` line."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            SYNC_RETRIES.labels(str(log_fields.get("connector", "")), what).inc()
            log.warning("transient source error; retrying", extra={
                "event": "sync_retry", "step": what, "attempt": state.attempt_number,
                "sleep_seconds": round(sleep, 3), "error": f"{type(exc).__name__}: {exc}",
                **log_fields})

        return Retrying(stop=stop_after_attempt(self.attempts), wait=self.wait,
                        retry=retry_if_exception(is_transient), before_sleep=before_sleep,
                        reraise=True)
