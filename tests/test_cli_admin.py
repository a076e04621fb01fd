"""``contextd keys list|revoke`` and ``contextd connectors list|create|sync|pause|resume``
against a running service over real HTTP, and ``--help`` without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contextd.cli import main
from contextd.core.settings import get_settings
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    return make_runtime(filesystem_allowed_roots=[tmp_path])


@pytest.fixture
def admin_env(live_server: LiveServer, runtime: Runtime,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    k = keys(runtime.engine)
    monkeypatch.setenv("CONTEXTD_URL", live_server.base_url)
    monkeypatch.setenv("CONTEXTD_API_KEY", k["admin"])
    get_settings.cache_clear()
    yield k
    get_settings.cache_clear()


def last_json(out: str) -> dict[str, object]:
    return dict(json.loads(out[out.index("{\n  "):]))


def test_keys_list_and_revoke_through_the_service(
        admin_env: dict[str, str], live_server: LiveServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "test-agent" in listed and "active" in listed and "ctxd_" not in listed
    assert main(["keys", "revoke", "test-agent"]) == 0
    assert "revoked" in capsys.readouterr().out
    with live_server.client(admin_env["agent"]) as agent:
        assert agent.get("/v1/interactions", params={"user_id": "x"}).status_code == 401
    assert main(["keys", "revoke", "test-agent"]) == 2
    assert "no active key" in capsys.readouterr().err


def test_connectors_create_list_sync_pause_resume(
        admin_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "a.md").write_text("# Badges\n\nNew staff get a badge on day one.\n")
    config = json.dumps({"path": str(docs), "default_acl": ["public"]})
    assert main(["connectors", "create", "handbook", "--kind", "filesystem",
                 "--config", config, "--interval", "3600"]) == 0
    assert last_json(capsys.readouterr().out)["schedule"] == {"interval_seconds": 3600,
                                                              "jitter_seconds": 0}
    assert main(["connectors", "create", "bad", "--kind", "filesystem",
                 "--config", json.dumps({"path": str(tmp_path / "nope"),
                                         "default_acl": ["public"]})]) == 2
    assert "config.path" in capsys.readouterr().err
    assert main(["connectors", "sync", "handbook", "--wait"]) == 0
    run = last_json(capsys.readouterr().out)
    assert run["status"] == "success" and run["records_pulled"] == 1
    assert main(["connectors", "schedule", "handbook", "--cron", "0 6 * * *"]) == 0
    assert capsys.readouterr().out.startswith('handbook: {"cron": "0 6 * * *"')
    assert main(["connectors", "pause", "handbook"]) == 0
    assert capsys.readouterr().out.strip() == "handbook: paused"
    assert main(["connectors", "list"]) == 0
    listed = capsys.readouterr().out
    assert "handbook" in listed and "paused" in listed and "bad" not in listed
    assert main(["connectors", "resume", "handbook"]) == 0
    assert capsys.readouterr().out.strip() == "handbook: healthy"


def test_a_missing_service_or_key_is_one_clear_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONTEXTD_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("CONTEXTD_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["keys", "list"]) == 2
        assert "CONTEXTD_API_KEY" in capsys.readouterr().err
        monkeypatch.setenv("CONTEXTD_API_KEY", "ctxd_x_y")
        get_settings.cache_clear()
        assert main(["connectors", "list"]) == 2
        err = capsys.readouterr().err
        assert "no contextd service at http://127.0.0.1:9" in err and "Traceback" not in err
    finally:
        get_settings.cache_clear()


def test_help_loads_neither_the_model_nor_the_web_stack() -> None:
    code = ("import sys; from contextd.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'fastapi', 'qdrant_edge', 'sqlalchemy', "
            "'pydantic_settings', 'anyio', 'httpx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
