"""Interactions: recorded in SQL and embedded into the memory collection, listed, forgotten,
and purged after their TTL.

Each interaction keeps the scope (sources, kinds) of the key and bundle that produced it,
in SQL (``interaction_scopes``) and in its vector's payload; a reader is shown it only when
that scope lies within the reader's own, and both SQL and the vector filter say so in the
query itself (see :func:`scope_clause` and :func:`memory_scope`).

SQL is the source of truth; the vector (same id as the row) only finds candidates. A
write is all-or-nothing: the row is flushed, the vector written, then the row committed;
if the commit fails the vector is removed again. Deletions remove vectors first, so a
retry after a failure finds the rows and finishes the job.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, delete, func, select

from contextd.core.embedder import Bm25Encoder, DenseEncoder
from contextd.core.errors import InvalidInput
from contextd.core.store import ChunkPoint, VectorStore, WriteBatch
from contextd.core.telemetry import MEMORY_INTERACTIONS, MEMORY_PURGED, span
from contextd.core.types import AccessScope, as_utc, iso, utcnow
from contextd.retrieval.schemas import memory_text
from contextd.state import deferred
from contextd.state.db import session_scope
from contextd.state.tables import (
    BundleServed,
    FeedbackRow,
    InteractionEntity,
    InteractionRow,
    InteractionScope,
)

log = logging.getLogger(__name__)

INTERACTION_KIND = "interaction"
UNSCOPED = "*"  # the stored scope value of a dimension the producing key did not narrow
_BATCH = 500
_DIMENSIONS = (("source", "scope_sources"), ("kind", "scope_kinds"))


def memory_source(user_id: str) -> str:
    """The ``source`` of a user's points in the memory collection: one user, one source, so
    recall filters on it inside the engine and forgetting deletes it whole."""
    return f"memory:{user_id}"


@dataclass(frozen=True, slots=True)
class NewInteraction:
    """A validated interaction to record."""

    user_id: str
    query: str
    summary: str = ""
    session_id: str | None = None
    bundle_id: str | None = None
    outcome: str | None = None
    entities: Sequence[str] = ()
    agent: str = ""
    key_id: str = ""
    created_at: datetime | None = None
    sources: frozenset[str] | None = None  # the producing key's scope; None: not narrowed
    kinds: frozenset[str] | None = None


def _stored(values: frozenset[str] | None) -> list[str]:
    return [UNSCOPED] if values is None else sorted(values)


def _shown(values: Sequence[str]) -> list[str] | None:
    return None if UNSCOPED in values else sorted(values)


@dataclass(frozen=True, slots=True)
class Interaction:
    """An interaction as the API returns it."""

    id: str
    user_id: str
    agent: str
    session_id: str | None
    query: str
    summary: str
    bundle_id: str | None
    outcome: str | None
    entities: list[str]
    created_at: datetime
    sources: list[str] | None = None
    kinds: list[str] | None = None


@dataclass(slots=True)
class Page:
    """One page of interactions, newest first, and the cursor of the next page."""

    items: list[Interaction] = field(default_factory=list)
    next_cursor: str | None = None


def _public(row: InteractionRow, entities: Sequence[str],
            scope: dict[str, list[str]] | None = None) -> Interaction:
    scope = scope or {}
    return Interaction(row.id, row.user_id, row.agent, row.session_id, row.query, row.summary,
                       row.bundle_id, row.outcome, sorted(entities), as_utc(row.created_at),
                       _shown(scope.get("source", [UNSCOPED])),
                       _shown(scope.get("kind", [UNSCOPED])))


def scope_clause(*, sources: frozenset[str] | None,
                 kinds: frozenset[str] | None) -> list[ColumnElement[bool]]:
    """SQL conditions on ``InteractionRow``: its stored scope lies within a reader's
    ``sources`` / ``kinds`` (None: the reader is not narrowed in that dimension). Same
    rule as :func:`memory_scope` in the vector filter: at least one stored value, and
    every stored value allowed (so ``*``, not narrowed, only reaches unnarrowed readers)."""
    clauses: list[ColumnElement[bool]] = []
    for (dimension, _), allowed in zip(_DIMENSIONS, (sources, kinds), strict=True):
        if allowed is None:
            continue
        scoped = and_(col(InteractionScope.interaction_id) == col(InteractionRow.id),
                      col(InteractionScope.dimension) == dimension)
        clauses.append(exists().where(scoped, col(InteractionScope.value).in_(sorted(allowed))))
        clauses.append(~exists().where(scoped,
                                       col(InteractionScope.value).not_in(sorted(allowed))))
    return clauses


def memory_scope(user_id: str, *, sources: frozenset[str] | None,
                 kinds: frozenset[str] | None) -> AccessScope:
    """The vector filter of ``user_id``'s interactions a reader scoped to ``sources`` /
    ``kinds`` may recall (same rule as :func:`scope_clause`)."""
    within = tuple((field, allowed) for (_, field), allowed
                   in zip(_DIMENSIONS, (sources, kinds), strict=True) if allowed is not None)
    return AccessScope(principals=frozenset({f"user:{user_id}"}),
                       sources=frozenset({memory_source(user_id)}),
                       kinds=frozenset({INTERACTION_KIND}), within=within)


def record_interaction(engine: Engine, store: VectorStore, dense: DenseEncoder,
                       sparse: Bm25Encoder, new: NewInteraction) -> Interaction:
    """Store the row and its vector together: both or neither."""
    interaction_id = str(uuid.uuid4())
    created_at = as_utc(new.created_at or utcnow())
    text = memory_text(new.query, new.summary)
    with span("memory.record"):
        # In the model's query lane: an agent waits on this request, and recall matches
        # interactions query-to-query.
        vector = dense.encode_query(text)
        point = ChunkPoint(interaction_id, vector.tolist(), sparse.encode_document(text), {
            "source": memory_source(new.user_id), "source_id": interaction_id,
            "kind": INTERACTION_KIND, "acl": [f"user:{new.user_id}"],
            "user_id": new.user_id, "session_id": new.session_id or "",
            "updated_at": iso(created_at), "text": text, "entity_key": interaction_id,
            "scope_sources": _stored(new.sources), "scope_kinds": _stored(new.kinds),
        })
        row = InteractionRow(id=interaction_id, user_id=new.user_id, agent=new.agent,
                             key_id=new.key_id, session_id=new.session_id, query=new.query,
                             summary=new.summary, bundle_id=new.bundle_id,
                             outcome=new.outcome, created_at=created_at)
        entities = sorted(set(new.entities))
        stored_vector = False
        try:
            with session_scope(engine) as session:
                session.add(row)
                session.flush()
                session.add_all([InteractionEntity(interaction_id=interaction_id,
                                                   entity_key=e) for e in entities])
                session.add_all([InteractionScope(interaction_id=interaction_id,
                                                  dimension=dimension, value=value)
                                 for (dimension, _), values in zip(
                                     _DIMENSIONS, (new.sources, new.kinds), strict=True)
                                 for value in _stored(values)])
                session.flush()
                store.write(WriteBatch(upserts=[point]))
                stored_vector = True
        except BaseException:
            if stored_vector:  # the commit failed after the vector was written
                store.write(WriteBatch(delete_ids=[interaction_id]))
            raise
    MEMORY_INTERACTIONS.inc()
    log.info("interaction recorded", extra={"event": "interaction_recorded",
                                            "interaction_id": interaction_id,
                                            "user_id": new.user_id,
                                            "session_id": new.session_id})
    return _public(row, entities, {"source": _stored(new.sources),
                                   "kind": _stored(new.kinds)})


def _encode_cursor(row: InteractionRow) -> str:
    raw = json.dumps([iso(row.created_at), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return as_utc(datetime.fromisoformat(str(created).replace("Z", "+00:00"))), str(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidInput("cursor is not one this service returned",
                           details=[{"field": "cursor"}]) from exc


def list_interactions(engine: Engine, *, user_ids: frozenset[str] | None = None,
                      session_id: str | None = None, entity: str | None = None,
                      limit: int = 50, cursor: str | None = None,
                      sources: frozenset[str] | None = None,
                      kinds: frozenset[str] | None = None) -> Page:
    """Interactions of ``user_ids`` (None: any user) matching every given filter and
    recorded within the reader's ``sources`` / ``kinds`` (None: not narrowed), newest
    first, keyset-paged (a page never repeats or skips rows when new ones arrive
    meanwhile)."""
    query = select(InteractionRow).where(*scope_clause(sources=sources, kinds=kinds))
    if user_ids is not None:
        query = query.where(col(InteractionRow.user_id).in_(sorted(user_ids)))
    if session_id is not None:
        query = query.where(InteractionRow.session_id == session_id)
    if entity is not None:
        query = query.where(col(InteractionRow.id).in_(
            select(InteractionEntity.interaction_id).where(
                InteractionEntity.entity_key == entity)))
    if cursor:
        created, ident = _decode_cursor(cursor)
        query = query.where(or_(col(InteractionRow.created_at) < created,
                                and_(col(InteractionRow.created_at) == created,
                                     col(InteractionRow.id) < ident)))
    query = query.order_by(col(InteractionRow.created_at).desc(),
                           col(InteractionRow.id).desc()).limit(limit + 1)
    with Session(engine) as session:
        rows = list(session.exec(query))
        more = len(rows) > limit
        rows = rows[:limit]
        links: dict[str, list[str]] = {}
        scopes: dict[str, dict[str, list[str]]] = {}
        if rows:
            ids = [r.id for r in rows]
            for link in session.exec(select(InteractionEntity).where(
                    col(InteractionEntity.interaction_id).in_(ids))):
                links.setdefault(link.interaction_id, []).append(link.entity_key)
            for held in session.exec(select(InteractionScope).where(
                    col(InteractionScope.interaction_id).in_(ids))):
                scopes.setdefault(held.interaction_id, {}).setdefault(
                    held.dimension, []).append(held.value)
    return Page([_public(r, links.get(r.id, []), scopes.get(r.id)) for r in rows],
                _encode_cursor(rows[-1]) if more and rows else None)


def get_interactions(engine: Engine, ids: Sequence[str], *, user_id: str,
                     sources: frozenset[str] | None = None,
                     kinds: frozenset[str] | None = None) -> dict[str, InteractionRow]:
    """Rows for ``ids`` that belong to ``user_id`` and lie within the reader's scope
    (recall's check against the source of truth: a vector whose row is gone, another
    user's or one outside the scope is never served)."""
    if not ids:
        return {}
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(select(InteractionRow).where(
            col(InteractionRow.id).in_(list(ids)), InteractionRow.user_id == user_id,
            *scope_clause(sources=sources, kinds=kinds)))
        return {r.id: r for r in rows}


def _delete_rows(engine: Engine, ids: Sequence[str]) -> None:
    with session_scope(engine) as session:
        session.exec(delete(InteractionEntity).where(
            col(InteractionEntity.interaction_id).in_(list(ids))))
        session.exec(delete(InteractionScope).where(
            col(InteractionScope.interaction_id).in_(list(ids))))
        session.exec(delete(InteractionRow).where(
            col(InteractionRow.id).in_(list(ids))))


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a user removed."""

    user_id: str
    interactions: int
    vectors: int
    feedback: int
    bundles: int


def forget_user(memory_engine: Engine, engine: Engine, store: VectorStore, *,
                user_id: str) -> Forgotten:
    """Remove every trace of ``user_id``'s interactions: vectors, interaction rows and their
    entity links, feedback, and the bundles served to them."""
    with span("memory.forget"):
        source = memory_source(user_id)
        vectors = store.count(source)
        store.write(WriteBatch(delete_sources=[source]))
        interactions = 0
        with Session(memory_engine) as session:
            ids = list(session.exec(select(InteractionRow.id).where(
                InteractionRow.user_id == user_id)))
        for start in range(0, len(ids), _BATCH):
            _delete_rows(memory_engine, ids[start:start + _BATCH])
            interactions += len(ids[start:start + _BATCH])
        deferred.flush(engine)  # bundles served to the user that are still queued
        with session_scope(engine) as session:
            feedback = session.exec(select(func.count()).select_from(FeedbackRow).where(
                FeedbackRow.user_id == user_id)).one()
            bundles = session.exec(select(func.count()).select_from(BundleServed).where(
                BundleServed.user_id == user_id)).one()
            session.exec(delete(FeedbackRow).where(
                col(FeedbackRow.user_id) == user_id))
            session.exec(delete(BundleServed).where(
                col(BundleServed.user_id) == user_id))
    MEMORY_PURGED.labels("forget").inc(interactions)
    result = Forgotten(user_id, interactions, vectors, int(feedback), int(bundles))
    log.info("user memory forgotten", extra={"event": "memory_forget", "user_id": user_id,
                                             "interactions": interactions, "vectors": vectors,
                                             "feedback": result.feedback,
                                             "bundles": result.bundles})
    return result


def purge_expired(engine: Engine, store: VectorStore, now: datetime | None = None, *,
                  ttl_days: float | None = None) -> int:
    """Delete interactions older than the TTL (``interaction_ttl_days`` unless given; no TTL
    keeps everything), vectors first. Returns how many were removed. Safe to run from
    several replicas at once: deletes are idempotent."""
    if ttl_days is None:
        from contextd.core.settings import get_settings

        ttl_days = get_settings().interaction_ttl_days
    if ttl_days is None:
        return 0
    cutoff = as_utc(now or utcnow()) - timedelta(days=ttl_days)
    removed = 0
    with span("memory.purge"):
        while True:
            with Session(engine) as session:
                ids = list(session.exec(
                    select(InteractionRow.id).where(col(InteractionRow.created_at) < cutoff)
                    .order_by(col(InteractionRow.created_at)).limit(_BATCH)))
            if not ids:
                break
            store.write(WriteBatch(delete_ids=ids))
            _delete_rows(engine, ids)
            removed += len(ids)
    if removed:
        MEMORY_PURGED.labels("ttl").inc(removed)
    log.info("expired interactions purged", extra={"event": "memory_purge", "removed": removed,
                                                   "cutoff": iso(cutoff)})
    return removed
