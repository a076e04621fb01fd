"""Fault tests: the vector store lost or damaged while the service was stopped.

Real Edge store files on disk, real SQL, the app over HTTP. A lost store makes /readyz
fail naming it and is rebuilt from the connectors' sources; damaged payload pages are a
503 with their own code on every route, never a 500.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.runtime import Runtime
from contextd.state.documents import expected_chunks
from tests.conftest import SAMPLE_DATA, LiveServer
from tests.factories import keys

QUERIES = ["travel per diem", "expense receipts deadline", "security badge policy"]


def boot(settings: Settings, encoder: SentenceTransformerEncoder) -> Runtime:
    runtime = Runtime(settings, dense_encoder=encoder)
    runtime.migrate()
    return runtime


def served_ids(server: LiveServer, key: str) -> dict[str, list[str]]:
    with server.client(key) as agent:
        answers = {}
        for query in QUERIES:
            resp = agent.post("/v1/context", json={"query": query, "user_id": "alice",
                                                   "token_budget": 1500})
            assert resp.status_code == 200, resp.text
            answers[query] = [f"{i['source']}/{i['source_id']}" for i in resp.json()["items"]]
    return answers


def loaded(tmp_path: Path, encoder: SentenceTransformerEncoder, **overrides: Any
           ) -> tuple[Settings, dict[str, str], dict[str, list[str]]]:
    """A data dir with the sample docs synced through a configured connector, and what
    the queries answered then."""
    docs = Path(shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs"))
    settings = Settings(data_dir=tmp_path / "data", filesystem_allowed_roots=[tmp_path],
                        consistency_check_seconds=0, **overrides)
    runtime = boot(settings, encoder)
    try:
        row = runtime.connectors.create(name="docs", kind="filesystem", config={
            "path": str(docs), "default_acl": ["public"],
            "acl": [{"glob": "finance/**", "principals": ["group:finance"]}]})
        assert runtime.connectors.run_blocking(row.id).status == "success"
        k = keys(runtime.engine)
        with LiveServer(runtime) as server:
            before = served_ids(server, k["agent"])
    finally:
        runtime.close()
    assert any(before.values())  # answers to compare after the fault
    return settings, k, before


def test_a_deleted_store_fails_readiness_then_is_rebuilt_and_answers_as_before(
        tmp_path: Path, encoder: SentenceTransformerEncoder) -> None:
    settings, k, before = loaded(tmp_path, encoder)
    shutil.rmtree(settings.edge_path)  # lost while stopped

    runtime = boot(settings.model_copy(update={"auto_rebuild": False}), encoder)
    try:
        with LiveServer(runtime) as server, server.client() as anon, \
                server.client(k["admin"]) as admin:
            ready = anon.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["vector_store"].startswith("store_missing: ")
            status = admin.get("/v1/store/consistency").json()
            assert status["report"]["status"] == "store_missing"
            assert status["report"]["affected"] == ["docs"]
    finally:
        runtime.close()

    runtime = boot(settings, encoder)
    try:
        with LiveServer(runtime) as server, server.client() as anon, \
                server.client(k["admin"]) as admin:
            assert runtime.consistency.wait_rebuilt(120)
            progress = admin.get("/v1/store/consistency").json()
            assert progress["rebuild"]["sources"] == {"docs": "done"}
            assert progress["rebuild"]["embedded"]["docs"] > 0
            assert progress["report"]["status"] == "ok"
            assert anon.get("/readyz").status_code == 200
            expected = expected_chunks(runtime.engine)
            assert runtime.store.count("docs") == expected["docs"][1] > 0
            assert served_ids(server, k["agent"]) == before  # every document restored
    finally:
        runtime.close()


def test_a_source_loaded_without_a_connector_is_named_not_silently_empty(
        make_runtime: Callable[..., Runtime]) -> None:
    from contextd.connectors.registry import build_connector
    from contextd.sync.pull import run_sync

    runtime = make_runtime(consistency_check_seconds=0)
    connector = build_connector("handbook", "filesystem", {
        "path": str(SAMPLE_DATA / "docs"), "default_acl": ["public"]})
    run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    from contextd.core.store import WriteBatch

    runtime.store.write(WriteBatch(delete_sources=["handbook"]))
    report = runtime.consistency.check()
    assert report.status == "store_missing" and report.affected == ["handbook"]
    assert runtime.consistency.wait_rebuilt(30)
    assert runtime.consistency.progress.sources == {"handbook": "no_connector"}
    ready, detail = runtime.consistency.readiness()
    assert not ready and "loaded without a connector" in detail


def zero_payload_pages(edge_path: Path) -> int:
    pages = list(edge_path.glob("segments/*/payload_storage/page_*.dat"))
    for page in pages:
        size = page.stat().st_size
        with page.open("r+b") as fh:
            fh.write(b"\0" * size)
    return len(pages)


def test_zeroed_payload_pages_are_503_store_unreadable_never_500(
        tmp_path: Path, encoder: SentenceTransformerEncoder) -> None:
    settings, k, _ = loaded(tmp_path, encoder)
    assert zero_payload_pages(settings.edge_path) > 0
    runtime = boot(settings, encoder)
    try:
        with LiveServer(runtime) as server, server.client() as anon, \
                server.client(k["agent"]) as agent, server.client(k["admin"]) as admin:
            ready = anon.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["vector_store"].startswith("store_unreadable")
            for _ in range(3):
                resp = agent.post("/v1/context", json={"query": QUERIES[0],
                                                       "user_id": "alice"})
                assert resp.status_code == 503, resp.text
                assert resp.json()["error"]["code"] == "store_unreadable"
            # Source counts come from the payload index, not the damaged pages: they answer.
            assert agent.get("/v1/sources", params={"user_id": "alice"}).status_code == 200
            assert admin.get("/v1/store/consistency").json()["report"]["status"] == \
                "store_unreadable"
    finally:
        runtime.close()


@pytest.mark.parametrize("store", ["edge", "server"])
def test_a_consistent_store_is_ready(make_runtime: Callable[..., Runtime], store: str) -> None:
    from contextd.connectors.registry import build_connector
    from contextd.sync.pull import run_sync

    runtime = make_runtime(store, consistency_check_seconds=0)
    run_sync(build_connector("docs", "filesystem", {"path": str(SAMPLE_DATA / "docs"),
                                                    "default_acl": ["public"]}),
             ingestor=runtime.ingestor, engine=runtime.engine)
    report = runtime.consistency.check()
    assert report.ok, report
    assert report.sampled_documents > 0 and report.missing_in_sample == 0
    assert runtime.consistency.readiness() == (True, "ok")
