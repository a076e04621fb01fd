"""Recall for context bundles: a user's relevant past interactions and the facts valid for
the entities a bundle mentions.

Interactions are searched in the memory collection with the user's id and the reader's
scope *inside* the engine filter (their own ``source`` and ``user:`` ACL; the sources and
kinds the interaction was recorded under lie within the request's), scored by cosine
similarity times a recency factor with a floor, then checked against SQL, the source of
truth (same user, same scope rule). Any SQL failure surfaces as :class:`Unavailable`, so
the bundle is still served with its items.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from contextd.core.errors import Unavailable
from contextd.core.settings import Settings
from contextd.core.store import Freshness, SearchQuery, VectorStore
from contextd.core.tokens import count_tokens
from contextd.core.types import AccessScope, as_utc, iso
from contextd.memory.facts import entity_type, facts_for
from contextd.memory.interactions import (
    INTERACTION_KIND,
    get_interactions,
    memory_scope,
)
from contextd.retrieval.schemas import memory_text

DAY = 86400.0
FACT_KIND = "crm"  # facts are recorded from CRM records only (see memory.facts)


def recency_factor(age_seconds: float, half_life_seconds: float, floor: float) -> float:
    """``floor + (1 - floor) * 0.5 ** (age / half_life)``, as the engine computes it."""
    return floor + (1.0 - floor) * 0.5 ** (max(age_seconds, 0.0) / half_life_seconds)


class MemoryRecall:
    """What the retriever asks memory for (see ``retrieval.service.MemoryProvider``)."""

    def __init__(self, *, engine: Engine, store: VectorStore, settings: Settings) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings

    def interactions(self, *, user_id: str, session_id: str | None,
                     dense: Sequence[float], now: datetime,
                     scope: AccessScope | None = None) -> list[dict[str, Any]]:
        """The user's past interactions relevant to the query vector ``dense`` and recorded
        within ``scope``'s sources and kinds (the request's: key and filters), same session
        first, then by relevance x recency; each with its token cost."""
        top_k = self.settings.memory_top_k
        if top_k == 0:
            return []
        half_life = self.settings.memory_half_life_days * DAY
        floor = self.settings.memory_freshness_floor
        sources = scope.sources if scope is not None else None
        kinds = scope.kinds if scope is not None else None
        hits = self.store.search(SearchQuery(
            scope=memory_scope(user_id, sources=sources, kinds=kinds),
            limit=max(top_k * 4, 20), dense=list(dense), mode="dense",
            freshness=Freshness(now=now, half_life_seconds={INTERACTION_KIND: half_life},
                                floor=floor)))
        relevant: list[tuple[str, float, float]] = []
        for hit in hits:
            updated = datetime.fromisoformat(str(hit.payload["updated_at"]).replace("Z",
                                                                                  "+00:00"))
            factor = recency_factor((now - updated).total_seconds(), half_life, floor)
            relevance = hit.score / factor
            if relevance >= self.settings.memory_min_relevance:
                relevant.append((hit.id, hit.score, relevance))
        if not relevant:
            return []
        try:
            rows = get_interactions(self.engine, [i for i, _, _ in relevant], user_id=user_id,
                                    sources=sources, kinds=kinds)
        except SQLAlchemyError as exc:
            raise Unavailable("the memory database is unavailable") from exc
        found: list[dict[str, Any]] = []
        for ident, score, relevance in relevant:
            row = rows.get(ident)
            if row is None:
                continue  # purged or forgotten: SQL decides
            same_session = session_id is not None and row.session_id == session_id
            found.append({
                "interaction_id": row.id, "query": row.query, "summary": row.summary,
                "created_at": iso(as_utc(row.created_at)), "session_id": row.session_id,
                "same_session": same_session, "outcome": row.outcome,
                "score": round(score, 6), "relevance": round(relevance, 6),
                "tokens": count_tokens(memory_text(row.query, row.summary)),
            })
        found.sort(key=lambda m: (not m["same_session"], -float(m["score"])))
        return found[:top_k]

    def facts(self, entity_keys: Sequence[str], *, principals: frozenset[str],
              as_of: datetime | None, history: bool,
              scope: AccessScope | None = None) -> list[dict[str, Any]]:
        """Facts valid at ``as_of`` (now by default) for ``entity_keys``, access-checked,
        and from CRM records of ``scope``'s sources only (facts come from CRM records).

        Facts are only recorded for the entity types with tracked attributes
        (``fact_attributes``: ``deal:...``, ``account:...``), so keys of other types, such as
        a document's ``<source>:<id>``, are not looked up: most bundles need no query."""
        tracked = self.settings.fact_attributes
        entity_keys = [k for k in entity_keys if entity_type(k) in tracked]
        if not entity_keys or (scope is not None and scope.kinds is not None
                               and FACT_KIND not in scope.kinds):
            return []
        try:
            facts = facts_for(self.engine, entity_keys, principals=principals, as_of=as_of,
                              history=history,
                              sources=scope.sources if scope is not None else None)
        except SQLAlchemyError as exc:
            raise Unavailable("the memory database is unavailable") from exc
        for fact in facts:
            fact["tokens"] = count_tokens(f"{fact['entity']} {fact['attribute']}: "
                                          f"{fact['value']} (since {fact['valid_from']})")
        return facts
