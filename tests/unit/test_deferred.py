"""The deferred writer on real SQLite and PostgreSQL: rows queued by many threads are all
written, a refused row costs only itself, readers see queued rows, close writes the rest."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from contextd.core.telemetry import REGISTRY
from contextd.state import audit, deferred
from contextd.state.costs import cost_row, daily_costs
from contextd.state.db import make_engine, migrate
from contextd.state.tables import AuditEvent, ContextRequestRow, CostEvent
from tests.pg import scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        migrate(eng)
        yield eng
        deferred.close(eng)
        eng.dispose()
        return
    with scratch_database("ctxdefer") as url:
        eng = make_engine(url)
        migrate(eng)
        yield eng
        deferred.close(eng)
        eng.dispose()


def _count(engine: Engine, table: type) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def _rows(outcome: str) -> float:
    return REGISTRY.get_sample_value("contextd_deferred_rows_total", {"outcome": outcome}) or 0.0


def test_rows_from_many_threads_are_all_written_and_flush_waits_for_them(engine) -> None:  # type: ignore[no-untyped-def]
    written_before = _rows("written")

    def request(n: int) -> None:
        for i in range(25):
            deferred.add(engine, ContextRequestRow(status=200, latency_ms=1.0,
                                                   request_id=f"r{n}-{i}"),
                         cost_row(kind="context", ref=f"b{n}-{i}", embed_tokens=3,
                                  embed_cpu_seconds=0.001, agent="a"))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deferred.flush(engine)
    assert _count(engine, ContextRequestRow) == 400
    assert _count(engine, CostEvent) == 400
    assert deferred.writer(engine).pending == 0
    assert _rows("written") - written_before == 800


def test_readers_of_the_tables_see_rows_queued_before_them(engine) -> None:  # type: ignore[no-untyped-def]
    writer = deferred.writer(engine)
    audit.record_later(engine, action="context.request", actor="agent", user_id="ann")
    deferred.add(engine, cost_row(kind="context", ref="b1", embed_tokens=7,
                                  embed_cpu_seconds=0.5, agent="agent", served_tokens=11))
    # no explicit flush: the read paths flush first
    events, _ = audit.query(engine, audit.AuditFilter(action="context.request"))
    assert [(e.actor, e.user_id) for e in events] == [("agent", "ann")]
    day = daily_costs(engine, days=1)
    assert [(d["events"], d["embed_tokens"], d["served_tokens"]) for d in day] == [(1, 7, 11)]
    assert writer.pending == 0


def test_a_refused_row_is_dropped_alone_and_counted(engine) -> None:  # type: ignore[no-untyped-def]
    dropped_before = _rows("dropped")
    good = [AuditEvent(action="context.request", actor=f"k{i}") for i in range(3)]
    # the same primary key twice: the database refuses the second, not its neighbours
    twice = [CostEvent(id=424242, day="2026-12-02", kind="context", ref=str(i))
             for i in range(2)]
    deferred.add(engine, good[0], twice[0], good[1], twice[1], good[2])
    deferred.flush(engine)
    assert _count(engine, AuditEvent) == 3
    assert _count(engine, CostEvent) == 1
    assert _rows("dropped") - dropped_before == 1


def test_close_writes_what_is_queued_and_later_rows_are_dropped(engine) -> None:  # type: ignore[no-untyped-def]
    for i in range(200):
        deferred.add(engine, ContextRequestRow(status=200, latency_ms=1.0, request_id=str(i)))
    writer = deferred.writer(engine)
    deferred.close(engine)
    assert _count(engine, ContextRequestRow) == 200
    dropped_before = _rows("dropped")
    writer.add(ContextRequestRow(status=200, latency_ms=1.0, request_id="late"))
    assert _rows("dropped") - dropped_before == 1
    assert _count(engine, ContextRequestRow) == 200


def test_a_writer_too_far_behind_drops_new_rows_instead_of_growing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(eng)
    blocked, entered = threading.Event(), threading.Event()
    writer = deferred.DeferredWriter(eng, max_pending=10)
    commit = writer._commit

    def slow(rows):  # type: ignore[no-untyped-def]
        entered.set()
        blocked.wait(10)
        commit(rows)

    writer._commit = slow  # type: ignore[method-assign]
    try:
        dropped_before = _rows("dropped")
        writer.add(ContextRequestRow(status=200, latency_ms=1.0, request_id="first"))
        assert entered.wait(10)  # the writer holds "first" and is stuck on the database
        for i in range(15):
            writer.add(ContextRequestRow(status=200, latency_ms=1.0, request_id=str(i)))
        assert _rows("dropped") - dropped_before == 5
        blocked.set()
        assert writer.flush(10)
        assert writer.pending == 0
        assert _count(eng, ContextRequestRow) == 11
    finally:
        blocked.set()
        writer.close()
        eng.dispose()


def test_rows_queued_within_the_linger_share_one_transaction_and_flush_does_not_wait(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A batch gathers for ``linger`` seconds (one commit for many requests' rows), but a
    reader's flush ends the wait at once: reading one's own writes never waits the linger."""
    import time

    from sqlalchemy import event

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(eng)
    commits: list[int] = []
    event.listen(eng, "commit", lambda conn: commits.append(1))
    writer = deferred.DeferredWriter(eng, linger=30.0)
    try:
        for i in range(10):
            writer.add(ContextRequestRow(status=200, latency_ms=1.0, request_id=f"l{i}"))
        time.sleep(0.2)
        assert _count(eng, ContextRequestRow) == 0  # still gathering
        commits.clear()
        started = time.monotonic()
        assert writer.flush(timeout=10.0)
        assert time.monotonic() - started < 5.0  # not the 30 s linger
        assert _count(eng, ContextRequestRow) == 10
        assert len(commits) == 1  # the ten rows in one transaction
    finally:
        writer.close()
        eng.dispose()


def test_close_ends_the_linger_and_writes_the_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(eng)
    writer = deferred.DeferredWriter(eng, linger=30.0)
    writer.add(ContextRequestRow(status=200, latency_ms=1.0, request_id="c1"))
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 5.0
    assert _count(eng, ContextRequestRow) == 1
    eng.dispose()
