"""``VectorStore`` on Qdrant Edge: the Qdrant engine in-process, persisted under DATA_DIR.

The ACL and scope filter is part of every prefetch and of the final stage, so the engine
only ever scores visible points; fusion (RRF) and the freshness formula run in the engine
too, leaving Python only supersession, de-duplication and packing.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    DecayKind,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    Expression,
    FieldCondition,
    Filter,
    Formula,
    Fusion,
    MatchAny,
    MatchExcept,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    PayloadSelector,
    Point,
    Prefetch,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeDateTime,
    SparseVector,
    UpdateOperation,
)

from contextd.core.errors import StoreUnreadable
from contextd.core.rwlock import ReadWriteLock
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
    vector_field,
    vectors_of,
)
from contextd.core.types import AccessScope, iso

_WRITE_CHUNK = 512  # points per engine call: bounds memory of one update operation

# A cached point: its payload without the vector copy, and its dense vector (None when the
# payload has no well-formed copy).
_Entry = tuple[dict[str, Any], np.ndarray | None]


class PayloadCache:
    """Payloads and dense vectors of recently searched points, by (id, version), least
    recently used out first.

    Why: reading payloads is most of an engine search and the engine holds the GIL while
    it reads and converts them (about 5 ms of a bundle's ~170 candidates, each with its
    text and vector copy), so it serializes concurrent requests. Searches ask the engine
    for ids, versions and scores only and take the payloads from here.

    Why it is exact: the engine gives every point a new version on each change (upsert,
    payload update, re-insert after delete), so an entry is the point's payload as of that
    version; a changed point is looked up under its new version and read again. What a
    search returns is still decided by the engine under the caller's filter; the cache
    only supplies the payloads of the points the engine returned. Entries are shared
    between requests and never mutated.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[tuple[str, int]]) -> list[_Entry | None]:
        entries = self._entries
        with self._lock:
            found = [entries.get(key) for key in keys]
            for key, entry in zip(keys, found, strict=True):
                if entry is not None:
                    entries.move_to_end(key)
        return found

    def put_many(self, items: Sequence[tuple[tuple[str, int], _Entry]]) -> None:
        if self.size <= 0:
            return
        entries = self._entries
        with self._lock:
            for key, entry in items:
                entries[key] = entry
            while len(entries) > self.size:
                entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def scope_filter(scope: AccessScope, extra: Sequence[Any] = (),
                 as_of: datetime | None = None) -> Filter:
    """The visible set as an engine filter: every condition ANDed, so scope only narrows.
    ``as_of`` hides what was written (``updated_at``) after that instant."""
    must: list[Any] = [FieldCondition("acl", match=MatchAny(sorted(scope.principals)))]
    if as_of is not None:
        must.append(FieldCondition("updated_at", range=RangeDateTime(lte=iso(as_of))))
    if scope.sources is not None:
        must.append(FieldCondition("source", match=MatchAny(sorted(scope.sources))))
    if scope.kinds is not None:
        must.append(FieldCondition("kind", match=MatchAny(sorted(scope.kinds))))
    must.extend(extra)
    must_not: list[Any] = []
    for name, allowed in scope.within:
        must.append(FieldCondition(name, match=MatchAny(sorted(allowed))))
        must_not.append(FieldCondition(name, match=MatchExcept(sorted(allowed))))
    return Filter(must=must, must_not=must_not or None)


@contextmanager
def _readable(what: str) -> Iterator[None]:
    """The engine's errors while reading (a damaged page fails to decode) as
    :class:`StoreUnreadable`: a 503 with its own code, never a 500."""
    try:
        yield
    except StoreUnreadable:
        raise
    except Exception as exc:  # the engine raises plain Exception with its message
        raise StoreUnreadable(f"the vector store cannot read its data ({what}): "
                              f"{str(exc)[:200]}") from exc


def freshness_formula(freshness: Freshness) -> Formula:
    """``$score * (floor + (1 - floor) * decay_kind(updated_at))`` with exp half-life decay."""
    now = Expression.Datetime(iso(freshness.now))
    per_kind = [
        Expression.Mult([
            Expression.Condition(FieldCondition("kind", match=MatchValue(kind))),
            Expression.Decay(DecayKind.Exp, Expression.DatetimeKey("updated_at"), target=now,
                             midpoint=0.5, scale=half_life),
        ])
        for kind, half_life in sorted(freshness.half_life_seconds.items())
    ]
    factor = Expression.Sum([
        Expression.Constant(freshness.floor),
        Expression.Mult([Expression.Constant(1.0 - freshness.floor), Expression.Sum(per_kind)]),
    ])
    return Formula(Expression.Mult([Expression.Variable("$score"), factor]))


class EdgeStore:
    """Qdrant Edge shard at ``path`` with a dense and a BM25 (IDF) named vector."""

    def __init__(self, path: Path, dim: int, *, search_threads: int | None = None,
                 payload_cache: int = 10_000) -> None:
        self.path = Path(path)
        self.dim = dim
        self.search_threads = search_threads
        self.payloads = PayloadCache(payload_cache)
        self._lock = ReadWriteLock()
        self._shard = self._open()

    def _open(self) -> EdgeShard:
        config = EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=self.dim, distance=Distance.Cosine)},
            sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            max_search_threads=self.search_threads or os.cpu_count(),
        )
        if self.path.exists() and any(self.path.iterdir()):
            return EdgeShard.load(str(self.path), config)
        self.path.mkdir(parents=True, exist_ok=True)
        shard = EdgeShard.create(str(self.path), config)
        for name in KEYWORD_FIELDS:
            shard.update(UpdateOperation.create_field_index(name, PayloadSchemaType.Keyword))
        for name in DATETIME_FIELDS:
            shard.update(UpdateOperation.create_field_index(name, PayloadSchemaType.Datetime))
        return shard

    def write(self, batch: WriteBatch) -> None:
        if not batch:
            return
        ops: list[UpdateOperation] = []
        for start in range(0, len(batch.upserts), _WRITE_CHUNK):
            points = [
                Point(p.id, {DENSE: [float(x) for x in p.dense],
                             SPARSE: SparseVector(p.sparse.indices, p.sparse.values)},
                      {**p.payload, VECTOR_FIELD: vector_field(p.dense)})
                for p in batch.upserts[start:start + _WRITE_CHUNK]
            ]
            ops.append(UpdateOperation.upsert_points(points))
        for update in batch.payload_updates:
            if update.ids:
                ops.append(UpdateOperation.set_payload(list(update.ids), update.payload))
        if batch.delete_ids:
            ops.append(UpdateOperation.delete_points(list(batch.delete_ids)))
        for ref in batch.delete_documents:
            ops.append(UpdateOperation.delete_points_by_filter(Filter(must=[
                FieldCondition("source", match=MatchValue(ref.source)),
                FieldCondition("source_id", match=MatchValue(ref.source_id)),
            ])))
        for source in batch.delete_sources:
            ops.append(UpdateOperation.delete_points_by_filter(
                Filter(must=[FieldCondition("source", match=MatchValue(source))])))
        with self._lock.write():
            for op in ops:
                self._shard.update(op)

    def search(self, query: SearchQuery) -> list[ScoredChunk]:
        if query.scope.is_empty or query.limit <= 0:
            return []
        flt = scope_filter(query.scope, as_of=query.as_of)
        if query.legs:
            return self._search_legs(query, flt)
        stages: list[Prefetch] = []
        if query.mode in ("hybrid", "dense") and query.dense is not None:
            stages.append(Prefetch(limit=query.prefetch_limit, filter=flt, query=Query.Nearest(
                [float(x) for x in query.dense], using=DENSE)))
        if query.mode in ("hybrid", "sparse") and query.sparse is not None and query.sparse.indices:
            stages.append(Prefetch(limit=query.prefetch_limit, filter=flt, query=Query.Nearest(
                SparseVector(query.sparse.indices, query.sparse.values), using=SPARSE)))
        if not stages:
            return []
        candidates = stages[0] if len(stages) == 1 else Prefetch(
            limit=query.prefetch_limit, filter=flt, prefetches=stages,
            query=Fusion.Rrf(k=query.rrf_k))  # type: ignore[arg-type]  # stub omits Rrf
        if query.freshness is not None:
            final: Any = freshness_formula(query.freshness)
            prefetches = [candidates]
        elif len(stages) == 1:
            final, prefetches = stages[0].query, []
        else:
            final, prefetches = Fusion.Rrf(k=query.rrf_k), stages
        request = QueryRequest(
            limit=query.limit, query=final, prefetches=prefetches, filter=flt,
            with_payload=False, with_vector=False,
        )
        with self._lock.read(), _readable("search"):
            found = self._shard.query(request)
            return self._chunks({str(h.id): h for h in found}, query.with_vectors, {})

    def _search_legs(self, query: SearchQuery, flt: Filter) -> list[ScoredChunk]:
        """Each leg as its own query under ``flt``, in one batch; hits keep leg scores."""
        legs: list[tuple[str, Any]] = []
        if query.mode in ("hybrid", "dense") and query.dense is not None:
            legs.append((DENSE, Query.Nearest([float(x) for x in query.dense], using=DENSE)))
        if query.mode in ("hybrid", "sparse") and query.sparse is not None and query.sparse.indices:
            legs.append((SPARSE, Query.Nearest(
                SparseVector(query.sparse.indices, query.sparse.values), using=SPARSE)))
        if not legs:
            return []
        batch = QueryBatchRequest([
            QueryRequest(limit=query.prefetch_limit, query=q, filter=flt, with_payload=False,
                         with_vector=False) for _, q in legs])
        with self._lock.read(), _readable("search"):
            results = self._shard.query_batch(batch)
            hits, scores = merge_legs([(name, found) for (name, _), found
                                       in zip(legs, results, strict=True)])
            return self._chunks(hits, query.with_vectors, scores)

    def _chunks(self, hits: dict[str, Any], with_vectors: bool,
                legs: dict[str, dict[str, tuple[int, float]]]) -> list[ScoredChunk]:
        """Engine hits by id (searched without payload) as chunks, in order: payloads and
        vectors from :class:`PayloadCache`, the others read from the engine and cached.
        Called under the read lock, so a point read here is the version the search saw."""
        keys = [(i, int(h.version)) for i, h in hits.items()]
        entries = self.payloads.get_many(keys)
        missing = [n for n, entry in enumerate(entries) if entry is None]
        if missing:
            read = self._read([keys[n][0] for n in missing])
            fresh = []
            for n in missing:
                entry = read.get(keys[n][0])
                if entry is not None:
                    entries[n] = entry
                    fresh.append((keys[n], entry))
            self.payloads.put_many(fresh)
        vectors: list[Any] = [None] * len(keys)
        if with_vectors:
            vectors = [entry[1] if entry is not None else None for entry in entries]
            lacking = [keys[n][0] for n, v in enumerate(vectors) if v is None]
            if lacking:  # written before the payload copy existed
                fetched = self._engine_vectors(lacking)
                vectors = [v if v is not None else _array(fetched.get(key[0]))
                           for key, v in zip(keys, vectors, strict=True)]
        return [ScoredChunk(id=key[0], score=float(h.score),
                            payload=entry[0] if entry is not None else {},
                            dense=v, legs=legs.get(key[0], {}))
                for key, h, entry, v in zip(keys, hits.values(), entries, vectors,
                                            strict=True)]

    def _read(self, ids: Sequence[str]) -> dict[str, _Entry]:
        """Payload (without the vector copy) and vector of each of ``ids``."""
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=False)
        found = [(str(r.id), dict(r.payload or {})) for r in records]
        vectors = vectors_of([payload.pop(VECTOR_FIELD, None) for _, payload in found],
                             self.dim)
        return {i: (payload, _own(vector))
                for (i, payload), vector in zip(found, vectors, strict=True)}

    def _engine_vectors(self, ids: list[str]) -> dict[str, Sequence[float]]:
        records = self._shard.retrieve(list(ids), with_payload=False, with_vector=[DENSE])
        found = ((str(r.id), _dense_of(r.vector)) for r in records)
        return {i: v for i, v in found if v is not None}

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self._lock.read(), _readable("lookup"):
            records = self._shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(r.id) for r in records}

    def read_payloads(self, ids: Sequence[str]) -> int:
        """Read the payloads of ``ids`` (a readability probe); how many were found."""
        if not ids:
            return 0
        with self._lock.read(), _readable("payloads"):
            return len(self._shard.retrieve(list(ids), with_payload=True, with_vector=False))

    def count(self, source: str | None = None) -> int:
        from qdrant_edge import CountRequest

        flt = None if source is None else Filter(
            must=[FieldCondition("source", match=MatchValue(source))])
        with self._lock.read(), _readable("count"):
            return int(self._shard.count(CountRequest(filter=flt, exact=True)))

    def document_chunks(self, scope: AccessScope, source: str, source_id: str,
                        limit: int = 10_000) -> list[dict[str, Any]]:
        from qdrant_edge import ScrollRequest

        if scope.is_empty:
            return []
        flt = scope_filter(scope, [FieldCondition("source", match=MatchValue(source)),
                                   FieldCondition("source_id", match=MatchValue(source_id))])
        request = ScrollRequest(limit=limit, filter=flt, with_vector=False,
                                with_payload=PayloadSelector.Exclude([VECTOR_FIELD]))
        with self._lock.read(), _readable("document"):
            records, _ = self._shard.scroll(request)
        return [dict(r.payload or {}) for r in records]

    def source_counts(self, scope: AccessScope, limit: int = 1000) -> dict[str, int]:
        from qdrant_edge import FacetRequest

        if scope.is_empty:
            return {}
        with self._lock.read(), _readable("sources"):
            found = self._shard.facet(FacetRequest("source", limit=limit, exact=True,
                                                   filter=scope_filter(scope)))
        return {str(hit.value): int(hit.count) for hit in found.hits}

    def versions(self, scope: AccessScope, entity_keys: Sequence[str],
                 until: datetime | None = None) -> list[dict[str, Any]]:
        from qdrant_edge import ScrollRequest

        if scope.is_empty or not entity_keys:
            return []
        flt = scope_filter(scope, [FieldCondition("entity_key",
                                                  match=MatchAny(sorted(set(entity_keys))))],
                           as_of=until)
        request = ScrollRequest(limit=VERSION_LIMIT, filter=flt, with_vector=False,
                                with_payload=PayloadSelector.Include(list(VERSION_FIELDS)))
        with self._lock.read(), _readable("versions"):
            records, _ = self._shard.scroll(request)
        return [dict(r.payload or {}) for r in records]

    @contextmanager
    def writes_paused(self) -> Iterator[None]:
        """Hold off every write and flush, so the files on disk are one consistent state
        (copied by ``contextd backup`` while this is held)."""
        with self._lock.write():
            self._shard.flush()
            yield

    def optimize(self) -> None:
        """Build HNSW and merge segments after a large ingest (blocks writers, not needed for
        correctness)."""
        with self._lock.write():
            self._shard.optimize()

    def close(self) -> None:
        with self._lock.write():
            self._shard.flush()
            self._shard.close()

    def destroy(self) -> None:
        """Close and delete the shard's files (temporary stores in eval and tests)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _own(vector: np.ndarray | None) -> np.ndarray | None:
    """A read-only copy: a decoded row is a view of the whole batch's buffer, which a
    cached row would keep alive."""
    if vector is None:
        return None
    copy = vector.copy()
    copy.flags.writeable = False
    return copy


def _array(vector: Sequence[float] | None) -> np.ndarray | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):
        value = vector.get(DENSE)
        return list(value) if value is not None else None
    return None
