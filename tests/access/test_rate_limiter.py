"""Token buckets, in-process and on the real Redis at 127.0.0.1:6379, under concurrency."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from contextd.api.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_limiter() -> Iterator[RedisRateLimiter]:
    prefix = f"contextd-test:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(REDIS_URL, prefix=prefix)
    yield limiter
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
    limiter.close()


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "local":
        return LocalRateLimiter()
    limiter: RateLimiter = request.getfixturevalue("redis_limiter")
    return limiter


def test_concurrent_takes_never_overdraw_the_bucket(limiter: RateLimiter) -> None:
    # One token per minute of refill: within the test only the burst can pass.
    with ThreadPoolExecutor(max_workers=32) as pool:
        decisions = list(pool.map(
            lambda _: limiter.take("k1", rate_per_minute=1, burst=10), range(200)))
    assert sum(d.allowed for d in decisions) == 10
    refused = [d for d in decisions if not d.allowed]
    assert all(50 < d.retry_after <= 60 for d in refused)


def test_buckets_refill_at_the_rate(limiter: RateLimiter) -> None:
    take = lambda: limiter.take("k2", rate_per_minute=1200, burst=2)  # noqa: E731  20/s
    assert take().allowed and take().allowed
    refused = take()
    assert not refused.allowed and 0 < refused.retry_after <= 0.05
    time.sleep(0.06)
    assert take().allowed
    assert not take().allowed


def test_keys_have_separate_buckets(limiter: RateLimiter) -> None:
    assert limiter.take("a", rate_per_minute=1, burst=1).allowed
    assert not limiter.take("a", rate_per_minute=1, burst=1).allowed
    assert limiter.take("b", rate_per_minute=1, burst=1).allowed


def test_two_replicas_share_one_redis_bucket(redis_limiter: RedisRateLimiter) -> None:
    other = RedisRateLimiter(REDIS_URL, prefix=redis_limiter._prefix)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            decisions = list(pool.map(
                lambda i: (redis_limiter if i % 2 else other).take(
                    "shared", rate_per_minute=1, burst=7), range(100)))
    finally:
        other.close()
    assert sum(d.allowed for d in decisions) == 7


def test_unreachable_redis_falls_back_to_local_buckets() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    try:
        assert limiter.take("k", rate_per_minute=1, burst=1).allowed
        assert not limiter.take("k", rate_per_minute=1, burst=1).allowed
    finally:
        limiter.close()
