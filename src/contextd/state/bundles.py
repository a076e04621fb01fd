"""Bundles served: one row per context response, written after the response is sent."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from contextd.retrieval.schemas import ContextBundle
from contextd.state import deferred
from contextd.state.tables import BundleServed


def query_hash(query: str) -> str:
    """What identifies a query without keeping its text."""
    return hashlib.sha256(query.encode()).hexdigest()


def served_items(bundle: ContextBundle) -> list[dict[str, Any]]:
    """Each item's provenance and score, with its ranking numbers (no text) under
    ``ranking`` when the bundle carries them."""
    return [{"id": i.id, "source": i.source, "source_id": i.source_id, "kind": i.kind,
             "doc_version": i.doc_version, "updated_at": i.updated_at, "score": i.score,
             "relevance": i.relevance, "superseded": i.superseded, "tokens": i.tokens,
             **({"ranking": bundle.ranking[i.id]} if i.id in bundle.ranking else {})}
            for i in bundle.items]


def bundle_row(bundle: ContextBundle, *, key_id: str, agent: str, session_id: str | None,
               kinds: list[str], token_budget: int, keep_query: bool) -> BundleServed:
    """The served bundle's row (appended, never updated afterwards)."""
    stats = bundle.stats
    return BundleServed(
        bundle_id=bundle.bundle_id, created_at=bundle.generated_at, key_id=key_id,
        agent=agent, user_id=bundle.user_id, session_id=session_id,
        query_hash=query_hash(bundle.query), query=bundle.query if keep_query else None,
        kinds_requested=sorted(kinds), items=served_items(bundle),
        token_budget=token_budget, token_count=bundle.token_count,
        candidates=int(stats.get("candidates", 0)),
        latency_ms=float(stats.get("latency_ms", 0.0)),
        stages_ms=dict(stats.get("stages_ms", {})))


def requested_kinds(engine: Engine, bundle_id: str) -> frozenset[str] | None:
    """The kinds filter the bundle was requested with; None when it had none or is
    unknown (then nothing narrows beyond the key's own scope)."""
    deferred.flush(engine)
    with Session(engine) as session:
        row = session.get(BundleServed, bundle_id)
    if row is None or not row.kinds_requested:
        return None
    return frozenset(row.kinds_requested)
