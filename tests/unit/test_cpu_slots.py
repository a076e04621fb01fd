"""CpuSlots: at most N threads hold a slot; a thread waiting on another process gives its
slot up so another request can run; no bound and no slot are no-ops."""

from __future__ import annotations

import threading
import time

import pytest

from contextd.core.cpu_slots import CpuSlots


def test_no_more_threads_than_slots_run_at_once() -> None:
    slots = CpuSlots(2)
    inside = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with slots.held():
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2


def test_a_waiting_thread_lets_another_run_then_takes_a_slot_again() -> None:
    slots = CpuSlots(1)
    model_done = threading.Event()
    other_ran = threading.Event()
    events: list[str] = []

    def request() -> None:
        with slots.held():
            events.append("a starts")
            with slots.waiting():  # as while the query embeds in the model's process
                assert model_done.wait(5)
            events.append("a resumes")

    def other() -> None:
        with slots.held():
            events.append("b runs")
            other_ran.set()

    a = threading.Thread(target=request)
    a.start()
    while not events:
        time.sleep(0.001)
    b = threading.Thread(target=other)
    b.start()
    assert other_ran.wait(5)  # b got a's slot while a waited
    model_done.set()
    a.join(5)
    b.join(5)
    assert events == ["a starts", "b runs", "a resumes"]


def test_held_is_reentrant_and_waiting_without_a_slot_is_a_no_op() -> None:
    slots = CpuSlots(1)
    with slots.waiting():  # holds nothing: nothing to give up
        pass
    with slots.held(), slots.held():  # the same thread: no second slot, no deadlock
        pass
    unbounded = CpuSlots(0)
    with unbounded.held(), unbounded.waiting():
        pass
    with pytest.raises(ValueError):
        CpuSlots(-1)


def test_a_bundle_gives_its_slot_up_while_its_query_embeds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The retriever waits for the query vector without its slot: here the vector is only
    produced by a thread that needs the one slot, which would deadlock otherwise."""
    from concurrent.futures import Future

    import numpy as np

    from contextd.core.model_owner import QueryEmbedding
    from contextd.core.settings import Settings
    from contextd.core.types import AccessScope
    from contextd.retrieval.schemas import ContextQuery
    from contextd.retrieval.service import Retriever, StageTimer

    slots = CpuSlots(1)
    pending: Future[QueryEmbedding] = Future()

    class Dense:
        def submit_query(self, text: str) -> Future[QueryEmbedding]:
            return pending

    def model() -> None:
        with slots.held():
            pending.set_result(QueryEmbedding(vector=np.ones(4, dtype=np.float32) / 2,
                                              tokens=3, cpu_seconds=0.0))

    retriever = Retriever(store=None, dense=Dense(), sparse=None,  # type: ignore[arg-type]
                          settings=Settings(data_dir=tmp_path), slots=slots)
    result: list[object] = []

    def request() -> None:
        with slots.held():
            result.extend(retriever._embed(
                ContextQuery(query="q", user_id="u"), AccessScope(principals=frozenset({"u"})),
                "dense", StageTimer(telemetry=False)))

    timer = threading.Timer(0.05, model)
    timer.daemon = True
    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    timer.start()
    thread.join(10)
    assert not thread.is_alive(), "the bundle kept its slot while waiting for the model"
    vector, sparse, scope = result
    assert vector is not None and sparse is None
    assert scope.principals == {"u"}  # type: ignore[attr-defined]
