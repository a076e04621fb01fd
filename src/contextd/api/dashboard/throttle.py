"""Dashboard logins: how often a client, and a key id, may try.

A login form takes a full API key, so it is a place to guess keys. Each attempt takes a
token from two buckets of the service's rate limiter (shared through Redis when set): one
per client address and one per key id named in the attempt, each holding
``login_attempts_per_minute`` tokens and refilling over a minute. An empty bucket answers
429 with Retry-After. Every failed attempt is audited; a throttled one is audited once per
bucket and minute, so a flood of attempts does not become a flood of rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from contextd.api.ratelimit import Decision, RateLimiter

WINDOW_SECONDS = 60.0


def key_id_of(submitted: str) -> str | None:
    """The id part of a submitted ``ctxd_<id>_<secret>`` string (not a secret), if any."""
    if not submitted.startswith("ctxd_"):
        return None
    key_id, sep, _ = submitted[5:].partition("_")
    return key_id[:32] if sep and key_id.isalnum() else None


class LoginThrottle:
    """Attempts per client and per key id, through the service's rate limiter."""

    def __init__(self, limiter: RateLimiter, per_minute: int) -> None:
        self.limiter = limiter
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._noted: dict[str, float] = {}

    def buckets(self, client: str, key_id: str | None) -> list[str]:
        names = [f"login:client:{client}"]
        if key_id is not None:
            names.append(f"login:key:{key_id}")
        return names

    def attempt(self, buckets: Sequence[str]) -> tuple[Decision, list[str]]:
        """Take one attempt from every bucket; refused (with the empty buckets) when any
        is empty."""
        decisions = {b: self.limiter.take(b, rate_per_minute=self.per_minute,
                                          burst=self.per_minute) for b in buckets}
        refused = [b for b, d in decisions.items() if not d.allowed]
        if refused:
            return Decision(False, max(decisions[b].retry_after for b in refused)), refused
        return Decision(True), []

    def first_refusal(self, refused: Sequence[str]) -> bool:
        """True when one of the ``refused`` buckets was not refused yet in this window:
        whether this refusal should be audited (at most once per bucket and minute)."""
        now = time.monotonic()
        with self._lock:
            self._noted = {k: t for k, t in self._noted.items()
                           if now - t < WINDOW_SECONDS}
            fresh = [b for b in refused if b not in self._noted]
            for name in fresh:
                self._noted[name] = now
            return bool(fresh)
