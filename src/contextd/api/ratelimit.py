"""Per-key token buckets: in-process by default, in Redis when ``CONTEXTD_REDIS_URL`` is set.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_minute / 60`` per second;
each request takes one. When empty, the caller learns how long until the next token
(``Retry-After``). The Redis variant runs the whole read-refill-take-write step as one
Lua script with the server's clock, so concurrent requests on any number of replicas
cannot overdraw a bucket. If Redis cannot be reached, the limiter falls back to the
in-process buckets (limits still hold per replica) and logs it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go ahead, and if not, seconds until it could."""

    allowed: bool
    retry_after: float = 0.0


class RateLimiter(Protocol):
    def take(self, bucket: str, *, rate_per_minute: int, burst: int) -> Decision: ...


class LocalRateLimiter:
    """Token buckets in this process, guarded by one lock (a take is a few float ops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, bucket: str, *, rate_per_minute: int, burst: int) -> Decision:
        rate = rate_per_minute / 60.0
        with self._lock:
            now = time.monotonic()
            tokens, stamp = self._buckets.get(bucket, (float(burst), now))
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            if tokens >= 1.0:
                self._buckets[bucket] = (tokens - 1.0, now)
                return Decision(True)
            self._buckets[bucket] = (tokens, now)
            return Decision(False, (1.0 - tokens) / rate)


# KEYS[1] bucket; ARGV[1] tokens per second; ARGV[2] burst. Returns {allowed, retry_after}.
# Floats go back as strings: Redis truncates Lua numbers to integers.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
"""


class RedisRateLimiter:
    """Token buckets shared by every replica, one atomic Lua call per request."""

    def __init__(self, url: str, *, prefix: str = "contextd:ratelimit:") -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url, socket_timeout=1.0,
                                                 socket_connect_timeout=1.0)
        self._script = self._client.register_script(_TOKEN_BUCKET_LUA)
        self._prefix = prefix
        self._fallback = LocalRateLimiter()

    def take(self, bucket: str, *, rate_per_minute: int, burst: int) -> Decision:
        import redis

        try:
            allowed, retry = self._script(keys=[self._prefix + bucket],
                                          args=[rate_per_minute / 60.0, burst])
        except redis.RedisError as exc:
            log.warning("rate limit store unavailable; using in-process buckets",
                        extra={"event": "ratelimit_fallback", "error": type(exc).__name__})
            return self._fallback.take(bucket, rate_per_minute=rate_per_minute, burst=burst)
        return Decision(bool(int(allowed)), float(retry))

    def close(self) -> None:
        self._client.close()


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis-backed when a URL is configured, else in-process."""
    return RedisRateLimiter(redis_url) if redis_url else LocalRateLimiter()
