"""``contextd sync NAME`` runs a configured connector once and prints the recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contextd.cli import main
from contextd.core.settings import Settings, get_settings
from contextd.runtime import Runtime


def printed_run(out: str) -> dict[str, object]:
    """The indented JSON the command prints (log lines go to stdout too, one per line)."""
    return dict(json.loads(out[out.index("{\n  "):]))


def test_sync_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "onboarding.md").write_text("# Onboarding\n\nNew staff get a badge on day one.\n")
    data = tmp_path / "data"
    setup = Runtime(Settings(data_dir=data, filesystem_allowed_roots=[tmp_path]))
    setup.migrate()
    setup.connectors.create(name="handbook", kind="filesystem",
                            config={"path": str(docs), "default_acl": ["public"]})
    setup.close()
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(data))
    monkeypatch.setenv("CONTEXTD_FILESYSTEM_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    get_settings.cache_clear()
    try:
        assert main(["sync", "handbook"]) == 0
        first = printed_run(capsys.readouterr().out)
        assert main(["sync", "handbook"]) == 0
        second = printed_run(capsys.readouterr().out)
        assert main(["sync", "nosuch"]) == 2
        assert "connector named 'nosuch' not found" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    assert first["status"] == "success" and first["trigger"] == "cli"
    assert isinstance(first["chunks_embedded"], int) and first["chunks_embedded"] >= 1
    assert second["status"] == "success" and second["chunks_embedded"] == 0
