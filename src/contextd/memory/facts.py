"""Temporal entity facts: a CRM attribute's value over time (a deal's stage, an account's plan).

Facts are derived from CRM records on ingest. Each value holds over ``[valid_from,
valid_to)`` where both bounds are the source record's own ``updated_at`` (a backfilled
record is dated when it changed at the source, never when it was ingested). Recording is
idempotent, so re-ingesting or ingesting out of order yields the same timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from contextd.core.telemetry import FACTS_RECORDED
from contextd.core.types import SourceRecord, Tombstone, as_utc, iso, utcnow
from contextd.state.db import session_scope
from contextd.state.tables import EntityFact

log = logging.getLogger(__name__)

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class FactObservation:
    """One attribute value seen on a record at the record's ``updated_at``."""

    entity_key: str
    attribute: str
    value: Any
    observed_at: datetime
    source: str
    source_id: str
    version: int
    acl: tuple[str, ...]


def entity_type(entity_key: str) -> str:
    """The type part of an entity key: ``deal`` of ``deal:D-1``, ``""`` without one."""
    kind, sep, _ = entity_key.partition(":")
    return kind if sep else ""


def observations(record: SourceRecord, version: int,
                 attributes: Mapping[str, Sequence[str]]) -> list[FactObservation]:
    """The tracked attributes a CRM record carries (by its entity type, e.g. ``deal``)."""
    kind = entity_type(record.entity_key)
    if record.kind != "crm" or not kind:
        return []
    return [FactObservation(record.entity_key, name, record.fields[name],
                            as_utc(record.updated_at), record.source, record.source_id,
                            version, tuple(sorted(set(record.acl))))
            for name in attributes.get(kind, ())
            if name in record.fields and record.fields[name] not in (None, "")]


def record_facts(engine: Engine, records: Iterable[tuple[SourceRecord, int]],
                 attributes: Mapping[str, Sequence[str]]) -> int:
    """Fold each ``(record, version)``'s tracked attributes into the timelines, in one
    transaction. Returns how many new values were recorded."""
    seen = [obs for record, version in records for obs in observations(record, version,
                                                                       attributes)]
    if not seen:
        return 0
    added = 0
    with session_scope(engine) as session:
        for obs in sorted(seen, key=lambda o: o.observed_at):
            added += _fold(session, obs)
        for source, source_id, acl in {(o.source, o.source_id, o.acl) for o in seen}:
            # The record's current ACL governs its whole history (content and ACL are
            # separate concerns: a value change never resets who may see it, and vice versa).
            session.exec(update(EntityFact)
                         .where(col(EntityFact.source) == source,
                                col(EntityFact.source_id) == source_id)
                         .values(acl=list(acl)))
    if added:
        FACTS_RECORDED.inc(added)
    return added


def _fold(session: Session, obs: FactObservation) -> int:
    """Insert ``obs`` into its timeline, splitting the interval it falls in."""
    timeline = list(session.exec(
        select(EntityFact).where(EntityFact.entity_key == obs.entity_key,
                                 EntityFact.attribute == obs.attribute,
                                 EntityFact.source == obs.source)
        .order_by(col(EntityFact.valid_from))))
    at = obs.observed_at
    same = next((f for f in timeline if as_utc(f.valid_from) == at), None)
    if same is not None:  # a correction of the value at that exact time
        if same.value != obs.value:
            same.value, same.version = obs.value, obs.version
            session.add(same)
        return 0
    before = [f for f in timeline if as_utc(f.valid_from) < at]
    after = [f for f in timeline if as_utc(f.valid_from) > at]
    prev = before[-1] if before else None
    nxt = after[0] if after else None
    prev_open = prev is not None and (prev.valid_to is None or as_utc(prev.valid_to) > at)
    if prev is not None and prev_open and prev.value == obs.value:
        return 0  # unchanged: the interval it falls in simply continues
    fact = EntityFact(entity_key=obs.entity_key, attribute=obs.attribute, value=obs.value,
                      valid_from=at, valid_to=nxt.valid_from if nxt else None,
                      source=obs.source, source_id=obs.source_id, version=obs.version,
                      acl=list(obs.acl), recorded_at=utcnow())
    if nxt is not None and nxt.value == obs.value:  # an earlier start of the next value
        fact.valid_to = nxt.valid_to
        session.delete(nxt)
    if prev is not None and prev_open:
        prev.valid_to = at
        session.add(prev)
    session.add(fact)
    session.flush()
    return 1


def close_facts(engine: Engine, tombstones: Iterable[Tombstone], at: datetime | None = None
                ) -> None:
    """A deleted record's open facts end now (a tombstone carries no source timestamp)."""
    refs = sorted({(t.source, t.source_id) for t in tombstones})
    if not refs:
        return
    at = as_utc(at or utcnow())
    with session_scope(engine) as session:
        for source, source_id in refs:
            session.exec(update(EntityFact)
                         .where(col(EntityFact.source) == source,
                                col(EntityFact.source_id) == source_id,
                                col(EntityFact.valid_to).is_(None))
                         .values(valid_to=at))


def _facts_of() -> Any:
    """Facts of ``:keys`` begun by ``:at``, as plain rows (not ORM objects), in timeline
    order. Built once: this runs inside every context request."""
    facts = EntityFact.__table__.c  # type: ignore[attr-defined]
    return (sa_select(facts.entity_key, facts.attribute, facts.value, facts.valid_from,
                      facts.valid_to, facts.source, facts.source_id, facts.version, facts.acl)
            .where(facts.entity_key.in_(bindparam("keys", expanding=True)),
                   facts.valid_from <= bindparam("at"))
            .order_by(facts.entity_key, facts.attribute, facts.valid_from))


_FACTS_OF = _facts_of()
# The same, from the records of some sources only (a request whose key or filters name them).
_FACTS_OF_SOURCES = _FACTS_OF.where(
    EntityFact.__table__.c.source.in_(  # type: ignore[attr-defined]
        bindparam("sources", expanding=True)))


def facts_for(engine: Engine, entity_keys: Sequence[str], *, principals: frozenset[str],
              as_of: datetime | None = None, history: bool = False,
              sources: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The facts valid at ``as_of`` (default now) for ``entity_keys`` that ``principals``
    may see, from records of ``sources`` (None: any), one per (entity, attribute); with
    ``history``, each carries its earlier values up to ``as_of``."""
    keys = sorted(set(entity_keys))
    if not keys or (sources is not None and not sources):
        return []
    at = as_utc(as_of or utcnow())
    statement = _FACTS_OF if sources is None else _FACTS_OF_SOURCES
    extra = {} if sources is None else {"sources": sorted(sources)}
    rows: list[Any] = []
    with engine.connect() as connection:
        for start in range(0, len(keys), _IN_CHUNK):
            rows.extend(connection.execute(
                statement, {"keys": keys[start:start + _IN_CHUNK], "at": at, **extra}))
    timelines: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if principals.isdisjoint(row.acl):
            continue  # fail closed: only what the user may see at its source
        timelines.setdefault((row.entity_key, row.attribute), []).append(row)
    found: list[dict[str, Any]] = []
    for (entity, attribute), timeline in timelines.items():
        current = timeline[-1]
        if current.valid_to is not None and as_utc(current.valid_to) <= at:
            continue  # the record was deleted (or the value ended) before ``at``
        fact = {"entity": entity, "attribute": attribute, "value": current.value,
                **_interval(current), "source": current.source,
                "source_id": current.source_id, "version": current.version}
        if history:
            fact["history"] = [{"value": f.value, **_interval(f), "version": f.version}
                               for f in timeline[:-1]]
        found.append(fact)
    return found


def _interval(fact: Any) -> dict[str, str | None]:
    return {"valid_from": iso(fact.valid_from),
            "valid_to": iso(fact.valid_to) if fact.valid_to is not None else None}
