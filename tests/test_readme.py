"""Every shell block of README.md, pasted in order into one shell, works against a started
demo: the README's quickstarts are run exactly as a new user would paste them.

Blocks preceded by ``<!-- not-run: why -->`` are left out (``make demo``, which this test
replaces by starting the demo itself, and ``make test``). The demo runs from a scratch
directory that holds the sample data and the project's virtualenv, on a free port.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!--\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```(?:sh|bash|shell)\n(?P<body>.*?)```",
                   re.S)
READY = "contextd demo is ready"


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(marker, body) of every sh/bash block, in order."""
    return [(m.group("mark") or "", m.group("body")) for m in BLOCK.finditer(text)]


def runnable(text: str) -> list[str]:
    return [body for mark, body in shell_blocks(text) if not mark.startswith("not-run")]


def test_the_marker_convention_is_read() -> None:
    text = ("<!-- not-run: starts the service -->\n```sh\nmake demo\n```\n\n"
            "```sh\necho one\n```\n```bash\necho two\n```\n```python\nx = 1\n```\n")
    assert runnable(text) == ["echo one\n", "echo two\n"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_readme_shell_blocks_run_in_order_against_the_demo(tmp_path: Path) -> None:
    blocks = runnable((REPO / "README.md").read_text())
    assert len(blocks) >= 4, "the README should hold runnable quickstarts"
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "sample_data").symlink_to(REPO / "sample_data")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "CONTEXTD_PORT": str(port),
           "CONTEXTD_DATA_DIR": str(tmp_path / ".contextd"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    for name in ("CONTEXTD_URL", "CONTEXTD_API_KEY"):
        env.pop(name, None)
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([str(tmp_path / ".venv/bin/contextd"), "demo", "--data",
                             "sample_data"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while READY not in (tmp_path / "demo.log").read_text():
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(1)
        script = "set -euo pipefail\n" + "\n".join(blocks)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=900)
        assert done.returncode == 0, (f"a README block failed\n--- stdout\n{done.stdout[-4000:]}"
                                      f"\n--- stderr\n{done.stderr[-4000:]}")
        printed = (tmp_path / "demo.log").read_text()
        assert printed.count(READY) == 1
        for where in (f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}/docs",
                      f"http://127.0.0.1:{port}/dashboard"):
            assert where in printed
        assert all(f"export {role}_KEY=" in printed for role in ("AGENT", "ADMIN", "ANALYST"))
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
