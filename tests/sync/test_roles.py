"""``contextd serve --role api`` and ``contextd worker`` on PostgreSQL with the server store
(on ``QdrantClient(":memory:")``, shared in-process as a Qdrant server would be): the API
replica queues syncs and never runs one, two workers contend for one connector's lease
(one run at a time, each request run once, both idle afterwards), a scheduled first run is
queued once across both workers, and what the workers embedded is served by the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from sqlmodel import Session, select

from contextd.cli import main
from contextd.connectors import registry
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.server_store import ServerStore
from contextd.core.settings import Settings, get_settings
from contextd.runtime import Runtime
from contextd.state.leases import try_acquire
from contextd.state.tables import SyncRequestRow, SyncRunRow
from tests.conftest import LiveServer
from tests.factories import keys
from tests.pg import scratch_database
from tests.sync.http_source import ItemsConnector, ItemsServer

TOKEN = "s3cret-token"
QDRANT_URL = "http://qdrant.invalid:6333"  # never dialled: the stores are injected


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"Warehouse bulletin {i}: forklift aisle {i} reopens Monday.",
             "updated_at": "2026-11-01T00:00:00Z"} for i in range(n)]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_database("ctxroles") as url:
        yield url


def test_api_and_worker_refuse_to_start_without_shared_state_or_schema(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["serve", "--role", "api"]) == 2
        assert "needs CONTEXTD_DATABASE_URL and CONTEXTD_QDRANT_URL" in capsys.readouterr().err
        monkeypatch.setenv("CONTEXTD_DATABASE_URL", pg_url)
        monkeypatch.setenv("CONTEXTD_QDRANT_URL", QDRANT_URL)
        get_settings.cache_clear()
        for argv in (["serve", "--role", "api"], ["worker"], ["serve", "--role", "worker"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert "has no contextd schema: run `contextd migrate` first" in err, err
            assert "Traceback" not in err
        assert main(["migrate"]) == 0
        assert '"migrated"' in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def _runtime(tmp_path: Path, url: str, client: QdrantClient,
             encoder: SentenceTransformerEncoder, role: str, **extra: Any) -> Runtime:
    settings = Settings(data_dir=tmp_path / role, database_url=url, qdrant_url=QDRANT_URL,
                        role=role, sync_poll_seconds=0.1, schedule_refresh_seconds=0.3,
                        **extra)  # type: ignore[arg-type]
    runtime = Runtime(settings, dense_encoder=encoder)
    runtime._store = ServerStore(client, settings.collection, encoder.dim)
    runtime._memory_store = ServerStore(client, f"{settings.collection}_memory", encoder.dim)
    return runtime


def _wait(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.05)
    return value


def test_api_replica_queues_and_two_workers_share_one_connector(
        pg_url: str, tmp_path: Path, encoder: SentenceTransformerEncoder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.CONNECTORS, ItemsConnector.kind, ItemsConnector)
    client = QdrantClient(":memory:")
    api = _runtime(tmp_path, pg_url, client, encoder, "api", scheduler_enabled=True)
    api.migrate()
    workers = [_runtime(tmp_path / f"w{n}", pg_url, client, encoder, "worker",
                        sync_workers=1, scheduler_enabled=True) for n in range(2)]
    k = keys(api.engine)
    try:
        with ItemsServer(items(12), token=TOKEN) as source, LiveServer(api) as server, \
                LiveServer(workers[0]) as w0, LiveServer(workers[1]) as w1, \
                server.client(k["admin"]) as admin, server.client(k["agent"]) as agent:
            # A worker serves its probes and metrics, and nothing of the API.
            with w0.client(k["agent"]) as probe:
                assert probe.get("/readyz").status_code == 200
                assert probe.post("/v1/context", json={"query": "x", "user_id": "a"}
                                  ).status_code == 404
            with w1.client(k["analyst"]) as analyst:
                assert analyst.get("/metrics").status_code == 200
            source.delay = 0.3  # a slow source: the run lasts several seconds
            # Test kinds are not in the API's typed create body: saved through the
            # replica's service, which writes the same row POST /v1/connectors would.
            cid = api.connectors.create(name="bulletins", kind="test_items", config={
                "base_url": source.url, "token": TOKEN}).id
            queued = admin.post(f"/v1/connectors/{cid}/sync")
            assert queued.status_code == 202 and queued.json()["status"] in ("queued",
                                                                             "running")

            def status() -> dict[str, Any]:
                return dict(admin.get(f"/v1/connectors/{cid}").json()["status"])

            _wait(lambda: status()["sync"] == "running")
            # The lease is held by the worker running it: nobody else can take it.
            assert try_acquire(api.engine, "connector:bulletins") is None
            again = admin.post(f"/v1/connectors/{cid}/sync").json()
            assert again["status"] == "queued" and again["queue_position"] == 1
            assert status()["sync"] == "running"
            _wait(lambda: status()["sync"] == "idle" and status()["last_success_at"], 120)
            assert not api.connectors.workers.running  # the API replica ran nothing
            # ... and rebuilds nothing either: a missing store is rebuilt by the workers.
            assert not api.consistency.auto_rebuild and workers[0].consistency.auto_rebuild

            with Session(api.engine) as session:
                runs = sorted(session.exec(select(SyncRunRow)).all(),
                              key=lambda r: r.started_at)
                requests = session.exec(select(SyncRequestRow)).all()
            assert [r.status for r in runs] == ["success", "success"]
            assert runs[0].finished_at is not None
            assert runs[0].finished_at <= runs[1].started_at  # one at a time
            assert sorted(r.run_id or "" for r in requests) == sorted(r.id for r in runs)
            assert {r.status for r in requests} == {"done"}
            assert {r.claimed_by for r in requests} <= {w.connectors.workers.id
                                                        for w in workers}
            assert runs[0].chunks_embedded == 12 and runs[1].chunks_embedded == 0

            # A scheduled connector: its first run is queued once across both workers.
            source.delay = 0.0
            sid = api.connectors.create(name="scheduled", kind="test_items", config={
                "base_url": source.url, "token": TOKEN},
                schedule={"interval_seconds": 3600}).id
            _wait(lambda: admin.get(f"/v1/connectors/{sid}").json()["status"][
                "last_success_at"])
            time.sleep(1.5)  # several refreshes of both workers
            assert len(admin.get(f"/v1/connectors/{sid}/runs").json()) == 1
            for worker in workers:
                assert worker.connectors.workers.running

            # What the workers embedded is served by the API replica.
            found = agent.post("/v1/context", json={"query": "forklift aisle 7 reopens",
                                                    "user_id": "ann", "top_k": 3,
                                                    "include_memory": False})
            assert found.status_code == 200, found.text
            assert "forklift aisle 7" in found.json()["items"][0]["text"]
    finally:
        for runtime in (*workers, api):
            runtime.close()
        client.close()


def test_sync_wait_on_an_api_replica_waits_for_a_worker(
        pg_url: str, tmp_path: Path, encoder: SentenceTransformerEncoder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.CONNECTORS, ItemsConnector.kind, ItemsConnector)
    client = QdrantClient(":memory:")
    api = _runtime(tmp_path, pg_url, client, encoder, "api", sync_wait_seconds=2)
    api.migrate()
    worker = _runtime(tmp_path, pg_url, client, encoder, "worker")
    k = keys(api.engine)
    try:
        with ItemsServer(items(3), token=TOKEN) as source, LiveServer(api) as server, \
                server.client(k["admin"]) as admin:
            cid = api.connectors.create(name="few", kind="test_items", config={
                "base_url": source.url, "token": TOKEN}).id
            # No worker yet: the replica waits, then says the run stays queued.
            waited = admin.post(f"/v1/connectors/{cid}/sync?wait=true")
            assert waited.status_code == 503
            assert "stays queued" in waited.json()["error"]["message"]
            assert admin.get(f"/v1/connectors/{cid}").json()["status"]["sync"] == "queued"
            with LiveServer(worker):
                _wait(lambda: admin.get(f"/v1/connectors/{cid}").json()["status"][
                    "last_success_at"])
                ran = admin.post(f"/v1/connectors/{cid}/sync?wait=true",
                                 timeout=httpx.Timeout(30))
                assert ran.status_code == 200 and ran.json()["status"] == "success"
    finally:
        for runtime in (worker, api):
            runtime.close()
        client.close()
