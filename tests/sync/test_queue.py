"""No run is dropped: 100 scheduled connectors created at once on a 2-worker pool each
complete their first run, and every one that is due shows ``queued`` (with its position)
or ``running`` until it has run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys

CONNECTORS = 100
INTERVAL = 3600


def test_hundred_connectors_on_two_workers_all_run_none_silently_waits(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    runtime = make_runtime(scheduler_enabled=True, sync_workers=2,
                           schedule_refresh_seconds=0.5, sync_poll_seconds=0.2,
                           filesystem_allowed_roots=[tmp_path])
    k = keys(runtime.engine)
    roots = []
    for n in range(CONNECTORS):
        root = tmp_path / f"src{n}"
        root.mkdir()
        (root / "note.md").write_text(f"# Note {n}\n\nTeam {n} meets on day {n % 7}.\n")
        roots.append(root)
    seen_states: set[str] = set()
    positions: list[int] = []
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin:
        for n, root in enumerate(roots):
            created = admin.post("/v1/connectors", json={
                "name": f"notes-{n}", "kind": "filesystem",
                "config": {"path": str(root), "default_acl": ["public"]},
                "schedule": {"interval_seconds": INTERVAL}})
            assert created.status_code == 201, created.text
        created_at = time.monotonic()
        deadline = created_at + 900
        while True:
            listed: list[dict[str, Any]] = admin.get("/v1/connectors").json()
            assert len(listed) == CONNECTORS
            done = 0
            for connector in listed:
                status = connector["status"]
                seen_states.add(status["sync"])
                if status["last_success_at"] is not None:
                    done += 1
                    continue
                assert status["state"] == "pending", connector
                # Due at creation: past one refresh it must be visibly waiting or running.
                if time.monotonic() - created_at > 3:
                    assert status["sync"] in ("queued", "running"), connector
                if status["sync"] == "queued":
                    assert status["queue_position"] >= 1
                    positions.append(status["queue_position"])
            if done == CONNECTORS:
                break
            assert time.monotonic() < deadline, f"only {done} of {CONNECTORS} ran"
            time.sleep(1.0)
        runs = [admin.get(f"/v1/connectors/{c['id']}/runs").json() for c in listed]
    assert all(len(r) == 1 and r[0]["status"] == "success" for r in runs)
    assert {"queued", "running"} <= seen_states
    assert max(positions) > 2  # two workers: the rest waited in the queue, in order
