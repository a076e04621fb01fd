"""``VectorStore`` on a Qdrant server (or cluster) through qdrant-client.

Same contract as :mod:`contextd.core.edge_store`: the ACL/scope filter sits in every
prefetch and the final stage, RRF and the freshness formula run in the engine. Tests run it
on ``QdrantClient(":memory:")``, which speaks the same client API; local mode is for tests
only (it scans in Python).

A write batch is one ``batch_update_points`` call, and the server applies it in order. The
adapter holds no lock of its own: the server serves many replicas, so a lock in one process
would only serialize that process's network calls without making anything atomic across
replicas. A search can land between the operations of a batch; the ids are
content-addressed and the old chunks are deleted last, so it sees at worst both versions
for the milliseconds of one batch, never neither. Hit vectors come from the server's own
stored dense vector (``with_vectors``); no copy is kept in the payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from contextd.core.store import (
    DATETIME_FIELDS,
    DENSE,
    KEYWORD_FIELDS,
    SPARSE,
    VECTOR_FIELD,
    VERSION_FIELDS,
    VERSION_LIMIT,
    Freshness,
    ScoredChunk,
    SearchQuery,
    WriteBatch,
    merge_legs,
)
from contextd.core.types import AccessScope, iso

_WRITE_CHUNK = 256
# A payload vector copy (the Edge adapter's format, e.g. in a migrated collection) is never served.
_PAYLOAD = m.PayloadSelectorExclude(exclude=[VECTOR_FIELD])


def scope_filter(scope: AccessScope, as_of: datetime | None = None) -> m.Filter:
    """The visible set; every condition ANDed so scope only ever narrows. ``as_of`` hides
    what was written (``updated_at``) after that instant."""
    must: list[m.Condition] = [
        m.FieldCondition(key="acl", match=m.MatchAny(any=sorted(scope.principals)))]
    if as_of is not None:
        must.append(m.FieldCondition(key="updated_at", range=m.DatetimeRange(lte=as_of)))
    if scope.sources is not None:
        must.append(m.FieldCondition(key="source", match=m.MatchAny(any=sorted(scope.sources))))
    if scope.kinds is not None:
        must.append(m.FieldCondition(key="kind", match=m.MatchAny(any=sorted(scope.kinds))))
    must_not: list[m.Condition] = []
    for name, allowed in scope.within:
        must.append(m.FieldCondition(key=name, match=m.MatchAny(any=sorted(allowed))))
        must_not.append(m.FieldCondition(key=name,
                                         match=m.MatchExcept(**{"except": sorted(allowed)})))
    return m.Filter(must=must, must_not=must_not or None)


def freshness_formula(freshness: Freshness) -> m.FormulaQuery:
    """``$score * (floor + (1 - floor) * decay_kind(updated_at))``, as in the Edge adapter."""
    now = m.DatetimeExpression(datetime=iso(freshness.now))
    per_kind: list[Any] = [
        m.MultExpression(mult=[
            m.FieldCondition(key="kind", match=m.MatchValue(value=kind)),
            m.ExpDecayExpression(exp_decay=m.DecayParamsExpression(
                x=m.DatetimeKeyExpression(datetime_key="updated_at"), target=now,
                scale=half_life, midpoint=0.5)),
        ])
        for kind, half_life in sorted(freshness.half_life_seconds.items())
    ]
    factor = m.SumExpression(sum=[
        freshness.floor,
        m.MultExpression(mult=[1.0 - freshness.floor, m.SumExpression(sum=per_kind)]),
    ])
    return m.FormulaQuery(formula=m.MultExpression(mult=["$score", factor]))


class ServerStore:
    """One collection with a dense and a BM25 (IDF) named vector."""

    def __init__(self, client: QdrantClient, collection: str, dim: int) -> None:
        self.client = client
        self.collection = collection
        self.dim = dim
        self._ensure_collection()

    @classmethod
    def from_url(cls, url: str, api_key: str | None, collection: str, dim: int) -> ServerStore:
        return cls(QdrantClient(url=url, api_key=api_key, timeout=30), collection, dim)

    def _ensure_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: m.VectorParams(size=self.dim, distance=m.Distance.COSINE)},
            sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
        )
        for name in KEYWORD_FIELDS:
            self.client.create_payload_index(self.collection, name,
                                             m.PayloadSchemaType.KEYWORD)
        for name in DATETIME_FIELDS:
            self.client.create_payload_index(self.collection, name,
                                             m.PayloadSchemaType.DATETIME)

    def write(self, batch: WriteBatch) -> None:
        if not batch:
            return
        ops: list[Any] = []
        for start in range(0, len(batch.upserts), _WRITE_CHUNK):
            ops.append(m.UpsertOperation(upsert=m.PointsList(points=[
                m.PointStruct(id=p.id, payload=p.payload,
                              vector={
                    DENSE: [float(x) for x in p.dense],
                    SPARSE: m.SparseVector(indices=p.sparse.indices, values=p.sparse.values)})
                for p in batch.upserts[start:start + _WRITE_CHUNK]])))
        for update in batch.payload_updates:
            if update.ids:
                ops.append(m.SetPayloadOperation(set_payload=m.SetPayload(
                    payload=update.payload, points=list(update.ids))))
        if batch.delete_ids:
            ops.append(m.DeleteOperation(delete=m.PointIdsList(points=list(batch.delete_ids))))
        for ref in batch.delete_documents:
            ops.append(m.DeleteOperation(delete=m.FilterSelector(filter=m.Filter(must=[
                m.FieldCondition(key="source", match=m.MatchValue(value=ref.source)),
                m.FieldCondition(key="source_id", match=m.MatchValue(value=ref.source_id)),
            ]))))
        for source in batch.delete_sources:
            ops.append(m.DeleteOperation(delete=m.FilterSelector(filter=m.Filter(must=[
                m.FieldCondition(key="source", match=m.MatchValue(value=source))]))))
        self.client.batch_update_points(self.collection, ops, wait=True)

    def search(self, query: SearchQuery) -> list[ScoredChunk]:
        if query.scope.is_empty or query.limit <= 0:
            return []
        flt = scope_filter(query.scope, as_of=query.as_of)
        if query.legs:
            return self._search_legs(query, flt)
        stages: list[m.Prefetch] = []
        if query.mode in ("hybrid", "dense") and query.dense is not None:
            stages.append(m.Prefetch(query=[float(x) for x in query.dense], using=DENSE,
                                     limit=query.prefetch_limit, filter=flt))
        if query.mode in ("hybrid", "sparse") and query.sparse is not None and query.sparse.indices:
            stages.append(m.Prefetch(
                query=m.SparseVector(indices=query.sparse.indices, values=query.sparse.values),
                using=SPARSE, limit=query.prefetch_limit, filter=flt))
        if not stages:
            return []
        rrf = m.RrfQuery(rrf=m.Rrf(k=query.rrf_k))
        final: Any
        prefetch: list[m.Prefetch] | None
        using: str | None = None
        if query.freshness is not None:
            inner = stages[0] if len(stages) == 1 else m.Prefetch(
                prefetch=stages, query=rrf, limit=query.prefetch_limit, filter=flt)
            final, prefetch = freshness_formula(query.freshness), [inner]
        elif len(stages) == 1:
            final, prefetch, using = stages[0].query, None, stages[0].using
        else:
            final, prefetch = rrf, stages
        points = self.client.query_points(
            self.collection, query=final, using=using, prefetch=prefetch,
            query_filter=flt, limit=query.limit, with_payload=_PAYLOAD,
            with_vectors=[DENSE] if query.with_vectors else False).points
        return [ScoredChunk(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}),
                            dense=_dense_of(p.vector) if query.with_vectors else None)
                for p in points]

    def _search_legs(self, query: SearchQuery, flt: m.Filter) -> list[ScoredChunk]:
        """Each leg as its own query under ``flt``, in one batch; hits keep leg scores."""
        legs: list[tuple[str, Any]] = []
        if query.mode in ("hybrid", "dense") and query.dense is not None:
            legs.append((DENSE, [float(x) for x in query.dense]))
        if query.mode in ("hybrid", "sparse") and query.sparse is not None and query.sparse.indices:
            legs.append((SPARSE, m.SparseVector(indices=query.sparse.indices,
                                                values=query.sparse.values)))
        if not legs:
            return []
        requests = [m.QueryRequest(query=q, using=name, filter=flt, limit=query.prefetch_limit,
                                   with_payload=_PAYLOAD,
                                   with_vector=[DENSE] if query.with_vectors else False)
                    for name, q in legs]
        results = self.client.query_batch_points(self.collection, requests)
        hits, scores = merge_legs([(name, found.points) for (name, _), found
                                   in zip(legs, results, strict=True)])
        return [ScoredChunk(id=i, score=float(p.score), payload=dict(p.payload or {}),
                            dense=_dense_of(p.vector) if query.with_vectors else None,
                            legs=scores.get(i, {}))
                for i, p in hits.items()]

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        records = self.client.retrieve(self.collection, list(ids), with_payload=False,
                                       with_vectors=False)
        return {str(r.id) for r in records}

    def read_payloads(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return len(self.client.retrieve(self.collection, list(ids), with_payload=True,
                                        with_vectors=False))

    def count(self, source: str | None = None) -> int:
        flt = None if source is None else m.Filter(must=[
            m.FieldCondition(key="source", match=m.MatchValue(value=source))])
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def document_chunks(self, scope: AccessScope, source: str, source_id: str,
                        limit: int = 10_000) -> list[dict[str, Any]]:
        if scope.is_empty:
            return []
        flt = m.Filter(must=[
            scope_filter(scope),
            m.FieldCondition(key="source", match=m.MatchValue(value=source)),
            m.FieldCondition(key="source_id", match=m.MatchValue(value=source_id))])
        records, _ = self.client.scroll(
            self.collection, scroll_filter=flt, limit=limit, with_vectors=False,
            with_payload=_PAYLOAD)
        return [dict(r.payload or {}) for r in records]

    def source_counts(self, scope: AccessScope, limit: int = 1000) -> dict[str, int]:
        if scope.is_empty:
            return {}
        found = self.client.facet(self.collection, key="source",
                                  facet_filter=scope_filter(scope), limit=limit, exact=True)
        return {str(hit.value): int(hit.count) for hit in found.hits}

    def versions(self, scope: AccessScope, entity_keys: Sequence[str],
                 until: datetime | None = None) -> list[dict[str, Any]]:
        if scope.is_empty or not entity_keys:
            return []
        flt = m.Filter(must=[
            scope_filter(scope, as_of=until),
            m.FieldCondition(key="entity_key", match=m.MatchAny(any=sorted(set(entity_keys))))])
        records, _ = self.client.scroll(
            self.collection, scroll_filter=flt, limit=VERSION_LIMIT, with_vectors=False,
            with_payload=m.PayloadSelectorInclude(include=list(VERSION_FIELDS)))
        return [dict(r.payload or {}) for r in records]

    def optimize(self) -> None:
        """The server optimizes on its own schedule; nothing to do."""

    def close(self) -> None:
        self.client.close()


def _dense_of(vector: Any) -> np.ndarray | None:
    """The dense vector of a hit as float32 (what the server stores)."""
    if isinstance(vector, dict) and vector.get(DENSE) is not None:
        return np.asarray(vector[DENSE], dtype=np.float32)
    return None
