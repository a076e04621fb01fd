"""``run_sync`` and ``contextd ingest`` with the filesystem connector, on both adapters."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd.cli import main
from contextd.connectors.registry import build_connector
from contextd.core.types import AccessScope
from contextd.retrieval.schemas import ContextQuery
from contextd.runtime import Runtime
from contextd.sync.pull import run_sync
from tests.conftest import SAMPLE_DATA

EVERYONE = AccessScope(frozenset({"public", "group:sales", "group:finance"}))


def texts(runtime: Runtime, query: str) -> str:
    bundle = runtime.retriever.bundle(ContextQuery(query=query, user_id="t", top_k=50,
                                                   token_budget=20000), EVERYONE)
    return "\n".join(i.text for i in bundle.items)


@pytest.mark.parametrize("store", ["edge", "server"])
def test_changed_file_replaces_old_text_and_deleted_file_disappears(
        store: str, make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    runtime = make_runtime(store)
    docs = Path(shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs"))
    connector = build_connector("docs", "filesystem",
                                {"path": str(docs), "default_acl": ["public"]})
    first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert first.stats.chunks_embedded > 0 and not first.failures
    handbook = docs / "support/support-handbook.md"
    handbook.write_text(handbook.read_text().replace("within 30 minutes", "within 12 minutes"))
    os.utime(handbook, ns=(1, 1_900_000_000_000_000_000))
    (docs / "product/release-notes.txt").unlink()
    second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert second.stats.changed == 1 and second.stats.deleted == 1
    assert 0 < second.stats.chunks_embedded < first.stats.chunks_embedded
    served = texts(runtime, "priority 1 tickets answered within minutes")
    assert "within 12 minutes" in served
    assert "within 30 minutes" not in served
    assert "Battery swap scheduling" not in texts(runtime, "Fleet Manager 4.2 release notes")
    third = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert third.stats.chunks_embedded == 0 and third.stats.changed == 0


def test_reconciliation_tombstones_what_the_source_no_longer_lists(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    """Even if a cursor is lost, ids the source no longer lists are deleted."""
    runtime = make_runtime()
    docs = Path(shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs"))
    connector = build_connector("docs", "filesystem",
                                {"path": str(docs), "default_acl": ["public"]})
    run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    (docs / "product/product-overview.html").unlink()
    from contextd.state.documents import save_cursor

    save_cursor(runtime.engine, name="docs", kind="filesystem", cursor={})  # cursor lost
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert result.reconciled_deletions == 1
    assert result.stats.chunks_embedded == 0  # everything else was unchanged
    assert "navigates with lidar" not in texts(runtime, "Northwind R2 picking robot lidar")


def test_cli_ingest_runs_without_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from contextd.core.settings import get_settings

    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        assert main(["ingest", str(SAMPLE_DATA / "crm"), "--connector", "crm_export"]) == 0
        out = capsys.readouterr().out
        assert '"records": 36' in out and '"chunks_embedded": 36' in out
        assert main(["ingest", str(SAMPLE_DATA / "crm"), "--connector", "crm_export"]) == 0
        out = capsys.readouterr().out
        assert '"chunks_embedded": 0' in out
        assert main(["ingest", str(tmp_path / "nope"), "--connector", "crm_export"]) == 2
        assert "holds no accounts" in capsys.readouterr().err
        assert main(["ingest", str(tmp_path), "--connector", "sharepoint"]) == 2
        assert "unknown connector kind" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
