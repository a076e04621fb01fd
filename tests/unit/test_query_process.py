"""The query child: queries are embedded in a child process exactly as the in-process
query lane embeds them; queries waiting together share one forward pass; a child that
dies is restarted and its batch sent again, a second death fails that batch's queries
with ``Unavailable`` (nothing hangs) and the next query gets a fresh child; a child that
cannot load the model fails the queries at once; closing, or the parent's death, leaves
no child behind (real all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contextd.core.embedder import SentenceTransformerEncoder, resolve_model_path
from contextd.core.errors import Unavailable
from contextd.core.query_process import QueryProcess
from tests.factories import wait_for
from tests.unit.test_embedder import QUERIES

LONG = [f"rule {n}: " + "receipts are kept for seven years and audited " * 40
        for n in range(64)]  # one batch of 64 x 256 tokens: long enough to kill it midway


@pytest.fixture
def queries() -> Iterator[QueryProcess]:
    lane = QueryProcess(resolve_model_path("all-MiniLM-L6-v2"))
    yield lane
    lane.close()


def gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` has ended (and was reaped) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def one_batch(queries: QueryProcess, texts: list[str]) -> list[Any]:
    """Submit ``texts`` so that they go to the child together: the dispatcher cannot take
    any of them before the last is queued."""
    with queries._cond:  # the dispatcher's lock (reentrant)
        return [queries.submit(t) for t in texts]


def test_queries_are_embedded_in_a_child_as_in_process(
        encoder: SentenceTransformerEncoder) -> None:
    """The default encoder's queries run in its query child; vectors and model tokens
    equal the in-process query lane's, and the child's CPU is reported."""
    assert encoder.queries is not None
    answered = [encoder.submit_query(q).result(timeout=60) for q in QUERIES]
    assert encoder.queries.pid not in (None, os.getpid())
    in_process = [encoder.owner.submit_query(q).result(timeout=60) for q in QUERIES]
    vectors = np.stack([a.vector for a in answered])
    assert vectors.dtype == np.float32 and vectors.shape == (len(QUERIES), encoder.dim)
    assert np.abs(vectors - np.stack([a.vector for a in in_process])).max() < 1e-5
    assert [a.tokens for a in answered] == [encoder.count_tokens([q]) for q in QUERIES]
    assert all(a.cpu_seconds > 0 for a in answered)


def test_waiting_queries_share_a_forward_pass(queries: QueryProcess) -> None:
    """Queries submitted while the child embeds a batch go in together in the next one,
    from one thread or many, and each gets its own vector."""
    alone = {q: queries.submit(q).result(timeout=120).vector for q in QUERIES}
    before = dict(queries.counts)
    burst = [queries.submit(q) for q in QUERIES * 6]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda q: queries.submit(q).result(timeout=120), QUERIES * 6))
    answered = [f.result(timeout=120) for f in burst] + threaded
    batches = queries.counts["query_batches"] - before["query_batches"]
    assert queries.counts["queries"] - before["queries"] == len(answered)
    assert batches < len(answered) / 2 and max(a.batch_size for a in answered) > 4
    want = np.stack([alone[q] for q in QUERIES * 12])
    assert np.abs(np.stack([a.vector for a in answered]) - want).max() < 1e-5


def test_a_dead_child_is_restarted_and_a_second_death_fails_the_batch(
        queries: QueryProcess) -> None:
    want = queries.submit(QUERIES[1]).result(timeout=120).vector
    want_long = queries.submit(LONG[0]).result(timeout=120).vector
    child = queries.child
    kills = {"left": 1}

    def killer(seen: int) -> None:
        """Kill each child a batch is sent to after the ``seen``-th, while kills are
        left: the batch is in the child or on its way, so its answer never comes."""
        while kills["left"] > 0:
            pid = child.pid
            if child.busy and child.batches > seen and pid:
                seen = child.batches
                os.kill(pid, signal.SIGKILL)
                kills["left"] -= 1
            time.sleep(0.002)

    with ThreadPoolExecutor(max_workers=1) as pool:
        watcher = pool.submit(killer, child.batches)
        answered = [f.result(timeout=300) for f in one_batch(queries, LONG)]
        watcher.result(timeout=60)
    assert child.starts == 2  # the batch was sent again to a fresh child
    assert {a.batch_size for a in answered} == {len(LONG)}
    assert np.abs(answered[0].vector - want_long).max() < 1e-5

    kills["left"] = 2
    with ThreadPoolExecutor(max_workers=1) as pool:
        watcher = pool.submit(killer, child.batches)
        started = time.monotonic()
        for future in one_batch(queries, LONG):
            with pytest.raises(Unavailable, match="query embedding process died twice"):
                future.result(timeout=300)
        watcher.result(timeout=60)
    assert time.monotonic() - started < 300
    assert child.starts == 3
    # the next query starts a fresh child and is answered
    again = queries.submit(QUERIES[1]).result(timeout=120)
    assert child.starts == 4 and np.abs(again.vector - want).max() < 1e-5

    os.kill(child.pid or 0, signal.SIGKILL)  # dead while idle: noticed at the next batch
    time.sleep(0.2)
    assert np.abs(queries.submit(QUERIES[1]).result(timeout=120).vector - want).max() < 1e-5
    assert child.starts == 5


def test_a_child_that_cannot_load_the_model_fails_the_queries_at_once(
        tmp_path: Path) -> None:
    lane = QueryProcess(tmp_path / "no-model-here")
    try:
        started = time.monotonic()
        futures = [lane.submit(f"query {n}") for n in range(3)]
        for future in futures:
            with pytest.raises(Unavailable, match="query embedding process did not start"):
                future.result(timeout=120)
        assert time.monotonic() - started < 120
        assert lane.pid is None
    finally:
        lane.close()


def test_close_ends_the_child_and_cancels_what_waits(queries: QueryProcess) -> None:
    queries.submit("start the child").result(timeout=120)
    pid = queries.pid
    assert pid is not None
    running = one_batch(queries, LONG)  # a long batch in the child ...
    wait_for(lambda: queries.child.busy)
    waiting = queries.submit("queued behind it")  # ... and one waiting for the next
    queries.close()
    assert waiting.cancelled()
    assert all(f.done() for f in running)
    assert gone(pid)
    with pytest.raises(RuntimeError, match="closed"):
        queries.submit("after close")


def test_no_child_outlives_its_parent(tmp_path: Path) -> None:
    """A parent killed without closing anything: its query child sees the socket close
    and ends."""
    script = textwrap.dedent("""
        import os, signal, sys
        from contextd.core.embedder import resolve_model_path
        from contextd.core.query_process import QueryProcess
        lane = QueryProcess(resolve_model_path("all-MiniLM-L6-v2"))
        lane.submit("start").result(timeout=120)
        print(lane.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(Path(__file__).resolve().parents[2] / "src"),
                               os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists() \
            and "Z" not in _state(child):
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
