"""One run per connector at a time: advisory lock on PostgreSQL, expiring row on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from contextd.state.leases import try_acquire
from tests.conftest import REPO
from tests.pg import service_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with service_engine(request.param, tmp_path) as engine:
        yield engine


def test_second_holder_is_refused_until_release(engine: Engine) -> None:
    first = try_acquire(engine, "connector:a", ttl_seconds=60)
    assert first is not None
    assert try_acquire(engine, "connector:a", ttl_seconds=60) is None
    other = try_acquire(engine, "connector:b", ttl_seconds=60)
    assert other is not None
    first.renew()
    assert try_acquire(engine, "connector:a", ttl_seconds=60) is None
    first.release()
    again = try_acquire(engine, "connector:a", ttl_seconds=60)
    assert again is not None
    again.release()
    other.release()


def test_a_dead_holder_does_not_block_forever(engine: Engine) -> None:
    """A process holding the lease is killed: PostgreSQL frees the lock with its
    connection; on SQLite the row lease expires."""
    script = (
        "import sys, time\n"
        "from contextd.state.db import make_engine\n"
        "from contextd.state.leases import try_acquire\n"
        "lease = try_acquire(make_engine(sys.argv[1]), 'connector:k', ttl_seconds=2)\n"
        "print('held' if lease else 'busy', flush=True)\n"
        "time.sleep(60)\n")
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert try_acquire(engine, "connector:k", ttl_seconds=2) is None
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        lease = None
        while lease is None and time.monotonic() < deadline:
            time.sleep(0.2)
            lease = try_acquire(engine, "connector:k", ttl_seconds=2)
        assert lease is not None
        lease.release()
    finally:
        proc.kill()
        proc.wait(10)
