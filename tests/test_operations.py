"""``contextd verify``, ``backup`` and ``restore`` on real stores: SQLite and PostgreSQL with
the Edge store, through the command line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contextd.cli import main
from contextd.connectors.registry import build_connector
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings, get_settings
from contextd.runtime import Runtime
from contextd.state.documents import expected_chunks
from contextd.sync.pull import run_sync
from tests.conftest import SAMPLE_DATA
from tests.pg import scratch_database


def printed(out: str) -> dict[str, Any]:
    """The indented JSON object the command prints last (log lines come before it)."""
    start = 0 if out.startswith("{") else out.rindex("\n{\n") + 1
    return dict(json.loads(out[start:]))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {"CONTEXTD_DATA_DIR": str(tmp_path / "data")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def load(settings: Settings, encoder: SentenceTransformerEncoder) -> dict[str, tuple[int, int]]:
    runtime = Runtime(settings, dense_encoder=encoder)
    runtime.migrate()
    try:
        connector = build_connector("docs", "filesystem", {"path": str(SAMPLE_DATA / "docs"),
                                                           "default_acl": ["public"]})
        run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
        return expected_chunks(runtime.engine)
    finally:
        runtime.close()


def roundtrip(settings: Settings, encoder: SentenceTransformerEncoder, tmp_path: Path,
              capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load(settings, encoder)
    assert main(["verify"]) == 0
    assert printed(capsys.readouterr().out)["status"] == "ok"
    backup = tmp_path / "backup"
    assert main(["backup", str(backup)]) == 0
    manifest = printed(capsys.readouterr().out)
    assert manifest["consistent"] is True and manifest["chunks"]["docs"] == loaded["docs"][1]
    assert main(["backup", str(backup)]) == 2  # never over an earlier backup
    assert "not empty" in capsys.readouterr().err

    shutil.rmtree(settings.edge_path)  # the store is lost
    assert main(["verify"]) == 1
    report = printed(capsys.readouterr().out)
    assert report["status"] == "store_missing" and report["affected"] == ["docs"]

    assert main(["restore", str(backup)]) == 0
    restored = printed(capsys.readouterr().out)
    assert restored["status"] == "ok"
    assert restored["sources"]["docs"]["points"] == loaded["docs"][1]


def test_verify_backup_and_restore_on_sqlite(
        env: dict[str, str], tmp_path: Path, encoder: SentenceTransformerEncoder,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=Path(env["CONTEXTD_DATA_DIR"]))
    roundtrip(settings, encoder, tmp_path, capsys)
    (Path(env["CONTEXTD_DATA_DIR"]) / "contextd.db").unlink()  # SQL lost too
    assert main(["restore", str(tmp_path / "backup")]) == 0
    assert printed(capsys.readouterr().out)["status"] == "ok"


def test_verify_backup_and_restore_on_postgres(
        env: dict[str, str], tmp_path: Path, encoder: SentenceTransformerEncoder,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("pg_dump") is None:  # pragma: no cover - the CI image has it
        pytest.fail("pg_dump is required for the PostgreSQL backup test")
    with scratch_database("ctxbk") as url:
        monkeypatch.setenv("CONTEXTD_DATABASE_URL", url)
        get_settings.cache_clear()
        settings = Settings(data_dir=Path(env["CONTEXTD_DATA_DIR"]), database_url=url)
        roundtrip(settings, encoder, tmp_path, capsys)


def test_restore_refuses_what_is_not_a_backup(env: dict[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["restore", str(tmp_path)]) == 2
    assert "holds no contextd backup" in capsys.readouterr().err
