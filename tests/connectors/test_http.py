"""The retrying HTTP client against a real loopback HTTP server that misbehaves on cue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from contextd.connectors.http import HttpSource, RetryPolicy, retry_after_seconds
from contextd.core.errors import SourceAuthError, SourceError, TransientSourceError
from contextd.core.telemetry import SOURCE_HTTP_RETRIES
from tests.conftest import _free_port
from tests.connectors.fake_saas import FakeApi, Fault, Response


class Echo(FakeApi):
    """Answers ``{"ok": true, "path": ...}``; sleeps first while ``slow`` > 0."""

    slow = 0

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              raw: bytes) -> Response:
        if self.slow > 0:
            self.slow -= 1
            time.sleep(0.6)
        if path == "/text":
            return 200, {}, None
        return 200, {}, {"ok": True, "path": path}


@pytest.fixture
def echo() -> Iterator[Echo]:
    with Echo("unused") as api:
        yield api


def source(api: FakeApi, **policy: Any) -> HttpSource:
    return HttpSource(source="t", base_url=api.base_url, policy=RetryPolicy(**{
        "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.1, **policy}))


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True),
                               now=now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True),
                               now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_retry_after_is_honoured_up_to_the_cap(echo: Echo) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3600), usegmt=True)
    echo.fail_next(Fault(429, {"Retry-After": later}), Fault(503, {"Retry-After": "1"}))
    started = time.monotonic()
    assert source(echo, max_retry_after_seconds=0.3).request_json("GET", "/x") == {
        "ok": True, "path": "/x"}
    assert 0.6 <= time.monotonic() - started < 3  # 0.3 (capped) + 0.3 (capped)


def test_timeouts_and_resets_are_retried(echo: Echo) -> None:
    echo.fail_next(Fault(0))  # the server hangs up without answering
    before = SOURCE_HTTP_RETRIES.labels("t", "connection")._value.get()
    assert source(echo).request_json("GET", "/r")["ok"] is True
    assert SOURCE_HTTP_RETRIES.labels("t", "connection")._value.get() == before + 1
    echo.slow = 1
    before = SOURCE_HTTP_RETRIES.labels("t", "timeout")._value.get()
    assert source(echo, timeout_seconds=0.2).request_json("GET", "/y")["ok"] is True
    assert SOURCE_HTTP_RETRIES.labels("t", "timeout")._value.get() == before + 1
    nobody = HttpSource(source="t", base_url=f"http://127.0.0.1:{_free_port()}",
                        policy=RetryPolicy(max_attempts=3, initial_backoff_seconds=0.01))
    before = SOURCE_HTTP_RETRIES.labels("t", "connection")._value.get()
    with pytest.raises(TransientSourceError, match="ConnectError on GET /z"):
        nobody.request_json("GET", "/z?secret=1")
    assert SOURCE_HTTP_RETRIES.labels("t", "connection")._value.get() == before + 2


def test_total_time_bounds_the_retries(echo: Echo) -> None:
    echo.fail_next(*[Fault(503, {"Retry-After": "1"}) for _ in range(10)])
    started = time.monotonic()
    with pytest.raises(TransientSourceError):
        source(echo, max_attempts=20, max_seconds=1.5).request_json("GET", "/x")
    assert time.monotonic() - started < 3
    assert 2 <= len(echo.requests) <= 3


def test_client_errors_are_not_retried_and_keep_only_the_api_error_code(echo: Echo) -> None:
    echo.fail_next(Fault(403, {}, {"status": "error", "category": "MISSING_SCOPES",
                                   "message": "This app hasn't been granted all required "
                                              "scopes."}))
    with pytest.raises(SourceAuthError, match=r"answered 403 .*Forbidden \(MISSING_SCOPES\)$"
                       ) as auth:
        source(echo).request_json("GET", "/a")
    assert "granted" not in auth.value.message  # reply text never reaches stored errors
    echo.fail_next(Fault(400, {}, [{"errorCode": "MALFORMED_QUERY",
                                    "message": "unexpected token: FORM"}]))
    with pytest.raises(SourceError, match=r"answered 400: Bad Request \(MALFORMED_QUERY\)$"):
        source(echo).request_json("GET", "/b")
    echo.fail_next(Fault(403, {}, [{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                    "message": "TotalRequests Limit exceeded."}]))
    with pytest.raises(SourceError, match="API quota exhausted") as caught:
        source(echo).request_json("GET", "/q")
    assert not isinstance(caught.value, SourceAuthError | TransientSourceError)
    assert len(echo.requests) == 3


def test_a_2xx_without_json_is_a_clear_error(echo: Echo) -> None:
    assert source(echo).request_json("GET", "/text") is None  # empty body
    echo.fail_next(Fault(200, {}, b"<html>maintenance</html>"))
    with pytest.raises(SourceError, match="answered 200 with a body that is not JSON"):
        source(echo).request_json("GET", "/c")
