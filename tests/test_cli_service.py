"""With ``contextd serve`` running on the embedded default (a real subprocess that owns
the Edge data directory), ``contextd sync NAME``, ``ingest PATH``, ``quality check`` and
``eval DIR`` succeed: the first three go through the service (and say so), eval works on a
store of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contextd.cli import main
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings, get_settings
from contextd.process.discovery import SERVICE_FILE, TOKEN_FILE
from contextd.quality.golden import GoldenQuery, create_golden_set
from contextd.runtime import Runtime
from tests.quality.corpus import QRELS, QUERIES, RECORDS
from tests.test_cli import write_beir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 600  # a loaded machine starts torch slowly
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.3)


@pytest.fixture
def served(tmp_path: Path, encoder: SentenceTransformerEncoder
           ) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    data = tmp_path / "data"
    handbook = tmp_path / "handbook"
    handbook.mkdir()
    (handbook / "badges.md").write_text("# Badges\n\nNew staff get a badge on day one.\n")
    setup = Runtime(Settings(data_dir=data, filesystem_allowed_roots=[tmp_path]),
                    dense_encoder=encoder)
    setup.migrate()
    setup.ingestor.ingest(RECORDS)
    create_golden_set(setup.engine, name="policies", qrels=QRELS,
                      queries=[GoldenQuery(id=q, text=t) for q, t in QUERIES.items()])
    setup.connectors.create(name="handbook", kind="filesystem",
                            config={"path": str(handbook), "default_acl": ["public"]})
    setup.close()
    port = _free_port()
    env = {**os.environ, "CONTEXTD_DATA_DIR": str(data), "CONTEXTD_SCHEDULER_ENABLED": "false",
           "CONTEXTD_FILESYSTEM_ALLOWED_ROOTS": json.dumps([str(handbook)]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "contextd.cli", "serve", "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        _wait_healthy(process, port)
        yield data, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=180)


def test_commands_go_through_the_running_service(
        served: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data, process = served
    info = json.loads((data / SERVICE_FILE).read_text())
    assert info["pid"] == process.pid
    assert (data / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "parking.md").write_text("# Parking\n\nVisitor parking is on level minus two.\n")
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(data))
    get_settings.cache_clear()
    try:
        assert main(["sync", "handbook"]) == 0
        out, err = capsys.readouterr()
        run = json.loads(out[out.index("{"):])
        assert run["status"] == "success" and run["chunks_embedded"] >= 1
        assert "ran connector 'handbook' through the running service" in err

        # Outside the allowed roots: the operator named the path, as without a service.
        assert main(["ingest", str(extra), "--connector", "filesystem", "--name", "extra",
                     "--config", '{"default_acl": ["public"]}']) == 0
        out, err = capsys.readouterr()
        assert json.loads(out[out.index("{"):])["records"] == 1
        assert f"ingested {extra} through the running service" in err

        assert main(["quality", "check"]) == 0
        out, err = capsys.readouterr()
        runs = json.loads(out[out.index("["):])
        assert len(runs) == 1 and runs[0]["metrics"]
        assert "ran 1 golden set(s) through the running service" in err

        assert main(["eval", str(write_beir(tmp_path / "beir"))]) == 0
        out, err = capsys.readouterr()
        assert re.search(r"hybrid\s+nDCG@10 \d\.\d{3}", out)
        assert "Traceback" not in out + err
    finally:
        get_settings.cache_clear()
    # The service owns the store still, and serves what the commands loaded through it.
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=180)
    assert not (data / SERVICE_FILE).exists() and not (data / TOKEN_FILE).exists()


def test_commands_go_through_the_running_demo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` serves too: with it running, `contextd sync docs` goes through it."""
    data = tmp_path / "data"
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    port = _free_port()
    env = {**os.environ, "CONTEXTD_DATA_DIR": str(data), "CONTEXTD_SCHEDULER_ENABLED": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "contextd.cli", "demo", "--data",
                                str(sample), "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (data / SERVICE_FILE).exists():
            assert process.poll() is None, "the demo stopped"
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.3)
        assert json.loads((data / SERVICE_FILE).read_text())["pid"] == process.pid
        _wait_healthy(process, port)
        monkeypatch.setenv("CONTEXTD_DATA_DIR", str(data))
        get_settings.cache_clear()
        try:
            assert main(["sync", "docs"]) == 0
            out, err = capsys.readouterr()
            assert json.loads(out[out.index("{"):])["status"] == "success"
            assert "ran connector 'docs' through the running service" in err
        finally:
            get_settings.cache_clear()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=180)
    assert not (data / SERVICE_FILE).exists() and not (data / TOKEN_FILE).exists()
