"""Temporal entity facts derived from CRM records on ingest, served in bundles with as_of."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from contextd.core.types import Tombstone
from contextd.memory.facts import facts_for
from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups
from contextd.state.tables import EntityFact
from tests.conftest import LiveServer
from tests.factories import keys
from tests.memory.conftest import deal

OCT_1 = datetime(2026, 10, 1, 9, tzinfo=UTC)
OCT_20 = datetime(2026, 10, 20, 9, tzinfo=UTC)
NOV_10 = datetime(2026, 11, 10, 10, tzinfo=UTC)
ALICE = frozenset({"public", "user:alice", "group:sales"})


def _timeline(runtime: Runtime, attribute: str) -> list[tuple[object, datetime, datetime | None]]:
    with Session(runtime.memory_engine) as session:
        rows = session.exec(select(EntityFact).where(EntityFact.attribute == attribute)
                            .order_by(col(EntityFact.valid_from)))
        return [(r.value, r.valid_from.replace(tzinfo=UTC),
                 r.valid_to.replace(tzinfo=UTC) if r.valid_to else None) for r in rows]


def test_stage_changes_become_a_timeline_dated_by_the_source(mem_runtime: Runtime) -> None:
    for stage, at in (("qualification", OCT_1), ("proposal", OCT_20), ("negotiation", NOV_10)):
        mem_runtime.ingestor.ingest([deal(stage, at)])
    assert _timeline(mem_runtime, "stage") == [
        ("qualification", OCT_1, OCT_20), ("proposal", OCT_20, NOV_10),
        ("negotiation", NOV_10, None)]
    # The amount never changed: one open fact from the first sighting.
    assert _timeline(mem_runtime, "amount") == [(1_200_000, OCT_1, None)]


def test_out_of_order_and_repeated_ingest_give_the_same_timeline(mem_runtime: Runtime) -> None:
    engine = mem_runtime.memory_engine
    from contextd.core.settings import DEFAULT_FACT_ATTRIBUTES
    from contextd.memory.facts import record_facts

    # A backfill arriving newest first, then everything again.
    for stage, at in (("negotiation", NOV_10), ("qualification", OCT_1), ("proposal", OCT_20),
                      ("negotiation", NOV_10), ("proposal", OCT_20)):
        record_facts(engine, [(deal(stage, at), 1)], DEFAULT_FACT_ATTRIBUTES)
    assert _timeline(mem_runtime, "stage") == [
        ("qualification", OCT_1, OCT_20), ("proposal", OCT_20, NOV_10),
        ("negotiation", NOV_10, None)]


def test_facts_as_of_history_acl_and_deletion(mem_runtime: Runtime) -> None:
    engine = mem_runtime.memory_engine
    for stage, at in (("qualification", OCT_1), ("proposal", OCT_20), ("negotiation", NOV_10)):
        mem_runtime.ingestor.ingest([deal(stage, at)])

    def stage(**kw: object) -> list[dict[str, object]]:
        found = facts_for(engine, ["deal:D-101"], **kw)  # type: ignore[arg-type]
        return [f for f in found if f["attribute"] == "stage"]

    assert stage(principals=ALICE)[0]["value"] == "negotiation"
    assert stage(principals=ALICE, as_of=datetime(2026, 10, 25, tzinfo=UTC))[0]["value"] \
        == "proposal"
    assert stage(principals=ALICE, as_of=datetime(2026, 9, 1, tzinfo=UTC)) == []
    history = stage(principals=ALICE, history=True)[0]["history"]
    assert [h["value"] for h in history] == ["qualification", "proposal"]
    # Someone who may not see the deal record sees none of its facts (fail closed).
    assert facts_for(engine, ["deal:D-101"], principals=frozenset({"public", "user:bob"})) == []
    # A deleted record's facts end at deletion.
    mem_runtime.ingestor.ingest([], [Tombstone("crm", "deal:D-101")])
    assert stage(principals=ALICE) == []
    assert stage(principals=ALICE, as_of=NOV_10)[0]["value"] == "negotiation"


def test_bundle_shows_current_stage_and_the_stage_as_of_a_past_date(
        mem_runtime: Runtime, mem_server: LiveServer) -> None:
    for stage, at in (("qualification", OCT_1), ("proposal", OCT_20), ("negotiation", NOV_10)):
        mem_runtime.ingestor.ingest([deal(stage, at)])
    set_user_groups(mem_runtime.engine, user_id="alice", groups=["sales"])
    set_user_groups(mem_runtime.engine, user_id="bob", groups=["support"])
    agent = keys(mem_runtime.engine)["agent"]
    body = {"query": "Where is the Acme renewal deal?", "user_id": "alice"}
    with mem_server.client(agent) as client:
        now = client.post("/v1/context", json=body).json()
        then = client.post("/v1/context", json={**body, "as_of": "2026-10-25T00:00:00Z",
                                                "fact_history": True}).json()
        bob = client.post("/v1/context", json={**body, "user_id": "bob"}).json()
        before = client.post("/v1/context", json={**body, "as_of": "2026-09-01T00:00:00Z"}).json()
        bad = client.post("/v1/context", json={**body, "as_of": "2026-10-25T00:00:00"})
    assert now["memory_status"] == "ok"
    assert any(i["entity_key"] == "deal:D-101" for i in now["items"])
    current = {f["attribute"]: f for f in now["facts"] if f["entity"] == "deal:D-101"}
    assert current["stage"]["value"] == "negotiation"
    assert current["stage"]["valid_from"].startswith("2026-11-10T10:00")
    assert "history" not in current["stage"] or current["stage"]["history"] is None
    past = {f["attribute"]: f for f in then["facts"] if f["entity"] == "deal:D-101"}
    assert past["stage"]["value"] == "proposal"
    assert [h["value"] for h in past["stage"]["history"]] == ["qualification"]
    assert bob["facts"] == [] and bob["items"] == []
    # Before the deal existed: neither its record nor any of its facts.
    assert before["items"] == [] and before["facts"] == []
    assert now["token_count"] <= 2000
    assert now["token_count"] == sum(i["tokens"] for i in now["items"]) + sum(
        f["tokens"] for f in now["facts"]) + sum(m["tokens"] for m in now["memory"])
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "as_of"
