"""The connector state (connectors, runs, quarantine, leases) on a real PostgreSQL:
two runs of one connector started at once never overlap (advisory lock)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from contextd.core.errors import Conflict
from contextd.runtime import Runtime
from contextd.state.tables import SyncRunRow
from tests.pg import scratch_database


@pytest.fixture
def urls() -> Iterator[tuple[str, str]]:
    with scratch_database() as state_url, scratch_database() as source_url:
        engine = create_engine(source_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE docs (id int PRIMARY KEY, body text, acl text, "
                              "updated_at timestamptz NOT NULL)"))
            conn.execute(text("INSERT INTO docs SELECT g, 'Document ' || g || ' about the "
                              "harbour crane maintenance window.', CASE WHEN g = 3 THEN "
                              "'nobody' ELSE 'user:ann' END, now() FROM generate_series(1, 40) g"))
        engine.dispose()
        yield state_url, source_url


def test_runs_never_overlap_and_state_round_trips(make_runtime: Callable[..., Runtime],
                                                  urls: tuple[str, str]) -> None:
    state_url, source_url = urls
    runtime = make_runtime(database_url=state_url)
    service = runtime.connectors
    row = service.create(name="docs", kind="sql", schedule={"cron": "0 3 * * *"},
                         config={"url": source_url, "table": "docs", "key_column": "id",
                                 "updated_at_column": "updated_at", "text_template": "{body}",
                                 "acl_column": "acl", "batch_size": 5})
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            outcomes.append(service.run_blocking(row.id))
        except Conflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    runs = [o for o in outcomes if isinstance(o, SyncRunRow)]
    assert len(runs) == 1 and sum(isinstance(o, Conflict) for o in outcomes) == 1
    assert runs[0].status == "partial" and runs[0].records_pulled == 39
    assert [q.source_id for q in service.quarantine(row.id)] == ["3"]
    assert service.status(service.get(row.id)).state == "healthy"
    again = service.run_blocking(row.id)
    assert again.chunks_embedded == 0 and again.skipped_unchanged == 0
    assert service.delete(row.id) == 39
    assert runtime.store.count("docs") == 0
