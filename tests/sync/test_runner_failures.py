"""Runner failure handling against a real local HTTP source (see ``http_source``):
429/503 retried with backoff honouring Retry-After, a wrong token failing fast with no
retry storm, a malformed record quarantined while the rest are ingested, a document
process that cannot start failing the run at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contextd.connectors import registry
from contextd.core.document_process import DocumentProcess
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.telemetry import REGISTRY
from contextd.runtime import Runtime
from contextd.sync.runs import RunSettings, execute_run
from tests.sync.http_source import ItemsConnector, ItemsServer

TOKEN = "s3cret-token"


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"Quarterly note {i}: the widget forecast grew by {i} percent.",
             "updated_at": "2026-11-01T00:00:00Z"} for i in range(n)]


@pytest.fixture
def server() -> Iterator[ItemsServer]:
    with ItemsServer(items(7), token=TOKEN) as srv:
        yield srv


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setitem(registry.CONNECTORS, ItemsConnector.kind, ItemsConnector)
    return make_runtime(sync_retry_attempts=5, sync_retry_initial_seconds=0.05,
                        sync_retry_max_seconds=5)


def test_429_and_503_are_retried_and_the_run_succeeds(rt: Runtime, server: ItemsServer) -> None:
    service = rt.connectors
    row = service.create(name="items", kind="test_items",
                         config={"base_url": server.url, "token": TOKEN})
    # check() and page 0 succeed, then the source starts failing mid-pull.
    original = server.answer
    calls = {"n": 0}

    def flaky(path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        calls["n"] += 1
        if calls["n"] == 3:
            return 429, {"Retry-After": "1"}, {"message": "slow down"}
        if calls["n"] in (4, 5):
            return 503, {}, {"message": "unavailable"}
        return original(path, headers)

    server.answer = flaky  # type: ignore[method-assign]
    retries = REGISTRY.get_sample_value("contextd_sync_retries_total",
                                        {"connector": "items", "step": "pull"}) or 0.0
    started = time.monotonic()
    run = service.run_blocking(row.id)
    elapsed = time.monotonic() - started
    assert run.status == "success", run.error
    assert run.attempts == 4  # the pull restarted from its checkpoint three times
    assert run.records_pulled == 7 and rt.store.count("items") == 7
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    statuses = [s for _, s in server.requests]
    assert statuses.count(429) == 1 and statuses.count(503) == 2
    # Page 0 was checkpointed before the failures, so it was never fetched twice by the pull.
    pulls_of_page0 = [p for p, s in server.requests if p.endswith("page=0") and s == 200]
    assert len(pulls_of_page0) == 3  # check(), the pull, and list_ids()
    assert service.status(service.get(row.id)).state == "healthy"
    assert REGISTRY.get_sample_value("contextd_sync_retries_total",
                                     {"connector": "items", "step": "pull"}) == retries + 3


def test_wrong_token_fails_fast_with_a_clear_status(rt: Runtime, server: ItemsServer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    service = rt.connectors
    row = service.create(name="items", kind="test_items",
                         config={"base_url": server.url, "token": "wrong-token-xyz"})
    caplog.set_level(logging.DEBUG)
    run = service.run_blocking(row.id)
    assert run.status == "failed" and run.error_code == "source_auth"
    assert "credentials rejected (HTTP 401)" in (run.error or "")
    assert len(server.requests) == 1  # no retry storm
    status = service.status(service.get(row.id))
    assert status.state == "failing" and "401" in (status.last_error or "")
    assert status.last_success_at is None
    assert "wrong-token-xyz" not in caplog.text
    # The fix: PATCH the secret; the next run succeeds.
    service.update(row.id, config={"token": TOKEN})
    assert service.run_blocking(row.id).status == "success"
    assert service.status(service.get(row.id)).state == "healthy"


def test_transient_errors_past_the_limit_fail_the_run(rt: Runtime, server: ItemsServer) -> None:
    service = rt.connectors
    row = service.create(name="items", kind="test_items",
                         config={"base_url": server.url, "token": TOKEN})
    server.failures = [(503, {})] * 20
    run = service.run_blocking(row.id)
    assert run.status == "failed" and run.error_code == "source_transient"
    assert "gave up after 5 attempts" in (run.error or "")
    assert len(server.requests) == 5


def test_malformed_record_is_quarantined_and_the_rest_ingested(rt: Runtime,
                                                               server: ItemsServer) -> None:
    service = rt.connectors
    server.items[4] = {"id": 4, "updated_at": "2026-11-01T00:00:00Z"}  # no text
    row = service.create(name="items", kind="test_items",
                         config={"base_url": server.url, "token": TOKEN})
    run = service.run_blocking(row.id)
    assert run.status == "partial" and run.quarantined == 1 and run.records_pulled == 6
    assert rt.store.count("items") == 6
    [entry] = service.quarantine(row.id)
    assert entry.source_id == "4" and "KeyError" in entry.error and '"id": 4' in entry.payload
    again = service.run_blocking(row.id)  # still broken: attempts counted, nothing embedded
    assert again.status == "partial" and again.chunks_embedded == 0
    assert service.quarantine(row.id)[0].attempts == 2
    server.items[4] = items(7)[4]  # fixed at the source: the next run ingests and releases it
    fixed = service.run_blocking(row.id)
    assert fixed.status == "success" and fixed.chunks_embedded == 1
    assert service.quarantine(row.id) == [] and rt.store.count("items") == 7


def test_service_stop_ends_a_run_after_its_batch_and_the_next_run_resumes(
        rt: Runtime, server: ItemsServer) -> None:
    service = rt.connectors
    row = service.create(name="items", kind="test_items",
                         config={"base_url": server.url, "token": TOKEN})
    server.delay = 0.4
    future = service.run_now(row.id)
    deadline = time.monotonic() + 30
    while not any(r.records_pulled for r in service.runs(row.id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    service.close()  # what the app does on shutdown
    stopped = future.result(timeout=30)
    assert stopped is not None and stopped.status == "interrupted"
    assert 0 < stopped.records_pulled < 7
    server.delay = 0.0
    resumed = execute_run(row.id, engine=rt.engine, ingestor=rt.ingestor,
                          settings=RunSettings(), trigger="manual")
    assert resumed is not None and resumed.status == "success"
    assert resumed.records_pulled == 7 - stopped.records_pulled
    assert stopped.chunks_embedded + resumed.chunks_embedded == 7 == rt.store.count("items")


def test_a_sync_fails_cleanly_when_documents_cannot_be_embedded(
        tmp_path: Path, server: ItemsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The document process cannot load its model: the run fails at once with that
    message (no hang, no traceback as the status), and nothing half-written is served."""
    monkeypatch.setitem(registry.CONNECTORS, ItemsConnector.kind, ItemsConnector)
    broken = SentenceTransformerEncoder()
    broken.documents = DocumentProcess(tmp_path / "no-model-here")
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), dense_encoder=broken)
    runtime.migrate()
    try:
        service = runtime.connectors
        row = service.create(name="items", kind="test_items",
                             config={"base_url": server.url, "token": TOKEN})
        started = time.monotonic()
        run = service.run_blocking(row.id)
        assert time.monotonic() - started < 120
        assert run.status == "failed" and run.error_code == "unavailable"
        assert "document embedding process did not start" in (run.error or "")
        assert runtime.store.count("items") == 0
        assert broken.documents.starts == 1
    finally:
        runtime.close()
        broken.close()
