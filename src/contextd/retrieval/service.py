"""Build a context bundle: embed -> scoped hybrid search -> supersede -> dedupe -> pack.

Timings of every stage are returned in ``stats.stages_ms`` so slow requests explain
themselves.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from opentelemetry import context as otel_context

from contextd.core.cpu_slots import CpuSlots
from contextd.core.embedder import Bm25Encoder, DenseEncoder
from contextd.core.errors import Unavailable
from contextd.core.settings import Settings
from contextd.core.store import Freshness, SearchMode, SearchQuery, SparseVec, VectorStore
from contextd.core.telemetry import CONTEXT_STAGE, span, tracer
from contextd.core.types import AccessScope, utcnow
from contextd.retrieval.exact import exact_terms
from contextd.retrieval.lag import SourceLag
from contextd.retrieval.ranking import (
    Candidate,
    drop_near_duplicates,
    freshness_factor,
    pack,
    supersede,
)
from contextd.retrieval.schemas import BundleItem, ContextBundle, ContextQuery
from contextd.retrieval.scoring import Weights, content_words, score
from contextd.retrieval.versions import mark_superseded

DAY = 86400.0
log = logging.getLogger(__name__)

ScopeSource = AccessScope | Callable[[], AccessScope]


class StageTimer:
    """Collects per-stage wall time in milliseconds; with telemetry on, each stage is also a
    span (``context.<stage>``) and an observation of ``contextd_context_stage_seconds``.

    ``deferred``: the spans and observations are made by :meth:`emit`, with the recorded
    start and end times, under the span that was current when the timer was made. The API
    emits after the response is sent, so the agent does not wait for its telemetry.
    """

    def __init__(self, telemetry: bool = True, *, deferred: bool = False) -> None:
        self.stages: dict[str, float] = {}
        self.cost: dict[str, float] = {}
        self.telemetry = telemetry
        self.deferred = telemetry and deferred
        self._parent = otel_context.get_current() if self.deferred else None
        self._recorded: list[tuple[str, float, float]] = []  # name, perf_counter start, end

    @contextmanager
    def stage(self, name: str, since: float | None = None) -> Iterator[None]:
        """Time the block as ``name``; ``since`` (a ``perf_counter`` reading) backdates
        the start for a stage already running elsewhere (a direct span covers the block,
        a deferred one the whole stage)."""
        started = time.perf_counter() if since is None else since
        try:
            if self.telemetry and not self.deferred:
                with span(f"context.{name}"):
                    yield
            else:
                yield
        finally:
            ended = time.perf_counter()
            elapsed = ended - started
            self.stages[name] = round(self.stages.get(name, 0.0) + elapsed * 1000, 3)
            if self.deferred:
                self._recorded.append((name, started, ended))
            elif self.telemetry:
                CONTEXT_STAGE.labels(name).observe(elapsed)

    def emit(self) -> None:
        """Make the deferred spans and observations (once). Spans are stamped in wall-clock
        nanoseconds: one offset from ``perf_counter`` converts every recorded reading."""
        recorded, self._recorded = self._recorded, []
        offset_ns = time.time_ns() - time.perf_counter_ns()
        for name, started, ended in recorded:
            tracer.start_span(f"context.{name}", context=self._parent,
                              start_time=offset_ns + int(started * 1e9)).end(
                end_time=offset_ns + int(ended * 1e9))
            CONTEXT_STAGE.labels(name).observe(ended - started)


def citation(payload: dict[str, object]) -> str:
    """A human-readable citation: title, where it lives, and the date of that version."""
    where = payload.get("uri") or f"{payload.get('source')}:{payload.get('source_id')}"
    date = str(payload.get("updated_at", ""))[:10]
    return f"{payload.get('title') or payload.get('source_id')} ({where}, updated {date})"


def parse_ts(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class Retriever:
    """Answers context queries against one store with one pair of encoders."""

    def __init__(self, *, store: VectorStore, dense: DenseEncoder, sparse: Bm25Encoder,
                 settings: Settings, clock: Callable[[], datetime] = utcnow,
                 source_lag: SourceLag | None = None, slots: CpuSlots | None = None) -> None:
        self.store = store
        self.slots = slots or CpuSlots(0)
        self.dense = dense
        self.sparse = sparse
        self.settings = settings
        self.clock = clock
        self.source_lag = source_lag
        self._terms: dict[str, bool] = {}

    def half_lives(self, overrides: dict[str, float]) -> dict[str, float]:
        """Half-life in seconds per kind: settings, overridden by the request."""
        days = {**self.settings.half_life_days, **overrides}
        return {kind: value * DAY for kind, value in days.items()}

    def _embed(self, query: ContextQuery, scope: ScopeSource, mode: SearchMode,
               timer: StageTimer) -> tuple[np.ndarray | None, SparseVec | None, AccessScope]:
        """Query vectors and the resolved scope. The dense model runs on its own thread
        (ahead of any document job, batched with the queries waiting beside it) while this
        one encodes BM25 and resolves the scope (a directory lookup), so those cost little
        wall time; ``stages_ms`` shows them overlapping ``embed``."""
        with timer.stage("embed"):
            pending = self.dense.submit_query(query.query) if mode != "sparse" else None
            sparse = self.sparse.encode_query(query.query) if mode != "dense" else None
            resolved = scope() if callable(scope) else scope
            embedded = None
            if pending is not None:
                if not pending.done():  # the model runs in its own process: let others run
                    with self.slots.waiting():
                        futures.wait([pending])
                embedded = pending.result()
            timer.cost["embed_cpu_seconds"] = embedded.cpu_seconds if embedded else 0.0
            timer.cost["embed_tokens"] = embedded.tokens if embedded else 0
        return (embedded.vector if embedded else None), sparse, resolved

    def search(self, query: ContextQuery, scope: ScopeSource, *, limit: int,
               mode: SearchMode = "hybrid", timer: StageTimer | None = None,
               freshness: bool = True) -> list[Candidate]:
        """Scoped engine search returning candidates with relevance and freshness split.

        ``scope`` may be a callable so its lookup overlaps the query embedding.
        """
        timer = timer or StageTimer()
        dense, sparse, resolved = self._embed(query, scope, mode, timer)
        return self._candidates(query, dense, sparse, resolved, limit=limit, mode=mode,
                                timer=timer, freshness=freshness)


    def _candidates(self, query: ContextQuery, dense: np.ndarray | None,
                    sparse: SparseVec | None, scope: AccessScope, *, limit: int,
                    mode: SearchMode, timer: StageTimer, freshness: bool) -> list[Candidate]:
        """Scored candidates, best first (``fusion``: 'score' fuses in Python on the legs'
        raw scores, 'rrf' lets the engine fuse ranks and weigh freshness)."""
        now = self.clock()
        half_lives = self.half_lives(query.half_life_days) if freshness else None
        if self.settings.fusion == "rrf":
            return self._rrf_candidates(query, dense, sparse, scope, limit=limit, mode=mode,
                                        timer=timer, half_lives=half_lives, now=now)
        request = SearchQuery(
            scope=scope, limit=limit, dense=None if dense is None else dense.tolist(),
            sparse=sparse, mode=mode, prefetch_limit=max(self.settings.prefetch_limit, limit),
            with_vectors=True, legs=True, as_of=query.as_of)
        with timer.stage("search"):
            hits = self.store.search(request)
        with timer.stage("score"):
            words = content_words(query.query, self._is_term)
            ranked = score(hits, dense, weights=self.weights, terms=exact_terms(query.query),
                           now=query.as_of or now, half_lives=half_lives, words=words)
        return ranked

    def _is_term(self, word: str) -> bool:
        """Whether BM25 indexes ``word`` (not a stopword); cached per word."""
        known = self._terms.get(word)
        if known is None:
            known = bool(self.sparse.encode_query(word).indices)
            if len(self._terms) < 100_000:
                self._terms[word] = known
        return known

    @property
    def weights(self) -> Weights:
        s = self.settings
        return Weights(dense_weight=s.dense_weight, freshness_weight=s.freshness_weight,
                       floor=s.freshness_floor, calibration=s.relevance_calibration,
                       feedback_docs=s.feedback_docs, feedback_weight=s.feedback_weight)

    def _rrf_candidates(self, query: ContextQuery, dense: np.ndarray | None,
                        sparse: SparseVec | None, scope: AccessScope, *, limit: int,
                        mode: SearchMode, timer: StageTimer, half_lives: dict[str, float] | None,
                        now: datetime) -> list[Candidate]:
        """Engine-side RRF with the freshness formula multiplying the fused score (the
        scheme docs/ranking.md compares score fusion with)."""
        floor = self.settings.freshness_floor
        fresh = Freshness(now=now, half_life_seconds=half_lives, floor=floor) \
            if half_lives is not None else None
        request = SearchQuery(
            scope=scope, limit=limit, dense=None if dense is None else dense.tolist(),
            sparse=sparse, mode=mode, prefetch_limit=max(self.settings.prefetch_limit, limit),
            rrf_k=self.settings.rrf_k, freshness=fresh, with_vectors=True, as_of=query.as_of,
        )
        with timer.stage("search"):
            hits = self.store.search(request)
        # Qdrant's RRF adds 1 / (k + rank) with 0-based ranks: two lists top out at 2 / k.
        max_rrf = 2.0 / self.settings.rrf_k
        candidates = []
        for hit in hits:
            updated_at = parse_ts(hit.payload.get("updated_at"))
            factor = 1.0
            if half_lives is not None:
                half_life = half_lives.get(str(hit.payload.get("kind")), 180 * DAY)
                factor = freshness_factor((now - updated_at).total_seconds(), half_life, floor)
            raw = hit.score / factor if factor else 0.0
            relevance = raw / max_rrf if mode == "hybrid" else raw
            candidates.append(Candidate(hit=hit, updated_at=updated_at,
                                        relevance=relevance, freshness=factor,
                                        score=relevance * factor, fused=relevance))
        return candidates

    def bundle(self, query: ContextQuery, scope: ScopeSource,
               timer: StageTimer | None = None,
               memory: MemoryProvider | None = None) -> ContextBundle:
        """A packed, cited bundle of what ``scope`` may see that best answers ``query``.

        Items below ``min_relevance`` are not served; ``found`` says whether any item
        reached it, and why not. With ``memory`` (and ``query.include_memory``), the user's
        relevant past interactions and the facts valid for the entities the bundle mentions
        share the token budget with the items (at most ``memory_token_share`` of it). If
        memory fails, the items are still served and ``warnings`` says so.
        """
        timer = timer or StageTimer()
        started = time.perf_counter()
        limit = min(max(query.top_k * 3, 30), self.settings.prefetch_limit)
        dense, sparse, resolved = self._embed(query, scope, query.mode, timer)
        candidates = self._candidates(query, dense, sparse, resolved, limit=limit,
                                      mode=query.mode, timer=timer,
                                      freshness=query.freshness_enabled)
        dropped: list[tuple[Candidate, str]] | None = [] if query.explain else None
        floor = self.settings.min_relevance if query.min_relevance is None \
            else query.min_relevance
        with timer.stage("rank"):
            ranked = drop_near_duplicates(supersede(candidates),
                                          self.settings.near_duplicate_cosine, dropped)
            relevant = [c for c in ranked if c.relevance >= floor]
            if dropped is not None:
                dropped.extend((c, f"relevance {c.relevance:.3f} below min_relevance "
                                   f"{floor}") for c in ranked if c.relevance < floor)
        recalled = Recalled(status="disabled")
        named: list[str] = []
        if memory is not None and query.include_memory and dense is not None:
            with timer.stage("memory"):
                if query.as_of is not None:
                    named = self._entities_now(query, dense, sparse, resolved, floor, timer)
                recalled = self._recall(memory, query, dense, resolved, relevant, named)
        with timer.stage("pack"):
            packed, truncated = pack(relevant, budget=query.token_budget - recalled.tokens,
                                     top_k=query.top_k, dropped=dropped)
            # What replaced each served item, though its successor was not a candidate.
            mark_superseded(self.store, resolved, [p.candidate for p in packed],
                            query.as_of or self.clock())
            items = [_item(p.candidate, p.text, p.tokens, query.explain) for p in packed]
            if query.explain:
                for item, p in zip(items, packed, strict=True):
                    if item.explain is not None:
                        item.explain["matched_terms"] = self.matched_terms(query.query,
                                                                           p.candidate)
            mentioned = {e for p in packed for e in _entities(p.candidate)} | set(named)
            facts = [f for f in recalled.facts if f["entity"] in mentioned]
        token_count = sum(i.tokens for i in items) + sum(m["tokens"] for m in recalled.memory) \
            + sum(f["tokens"] for f in facts)
        found, reason = _found(items, ranked, floor)
        stats = {
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "stages_ms": dict(timer.stages),
            "candidates": len(candidates),
            "cost": {"embed_tokens": int(timer.cost.get("embed_tokens", 0)),
                     "embed_cpu_seconds": round(timer.cost.get("embed_cpu_seconds", 0.0), 6)},
        }
        return ContextBundle(
            bundle_id=str(uuid.uuid4()), query=query.query, user_id=query.user_id,
            generated_at=self.clock(), items=items, memory=recalled.memory,
            token_count=token_count, truncated=truncated, stats=stats, facts=facts,
            memory_status=recalled.status, found=found, found_reason=reason,
            warnings=self._warnings(query, dense, sparse, candidates, recalled),
            dropped=None if dropped is None else [_dropped(c, why) for c, why in dropped],
            ranking={p.candidate.hit.id: ranking_numbers(p.candidate) for p in packed},
        )

    def matched_terms(self, query: str, cand: Candidate) -> list[str]:
        """The query's words whose BM25 terms (stemmed, as indexed) the chunk holds."""
        payload = cand.hit.payload
        held = self.sparse.terms(f"{payload.get('title') or ''}\n{payload.get('text') or ''}")
        out = []
        for word in dict.fromkeys(re.findall(r"[\w-]+", query)):
            ids = self.sparse.encode_query(word).indices
            if ids and set(ids) <= held:
                out.append(word)
        return out

    def _warnings(self, query: ContextQuery, dense: np.ndarray | None,
                  sparse: SparseVec | None, candidates: Sequence[Candidate],
                  recalled: Recalled) -> list[dict[str, Any]]:
        """What degraded this bundle: a leg that did not run, a source past its freshness
        objective, memory that could not be read."""
        out: list[dict[str, Any]] = []
        if query.mode != "sparse" and dense is None:
            out.append({"code": "leg_not_run", "leg": "dense",
                        "message": "the dense leg did not run: no query vector"})
        if query.mode != "dense" and (sparse is None or not sparse.indices):
            out.append({"code": "leg_not_run", "leg": "bm25",
                        "message": "the BM25 leg did not run: the query has no indexable "
                                   "terms (only stopwords or punctuation)"})
        if query.mode != "hybrid":
            out.append({"code": "leg_not_run",
                        "leg": "bm25" if query.mode == "dense" else "dense",
                        "message": f"mode {query.mode!r} runs one leg only"})
        if recalled.status == "unavailable":
            out.append({"code": "memory_unavailable",
                        "message": "memory could not be read; items only"})
        if self.source_lag is not None and candidates:
            kinds: dict[str, str] = {}
            for c in candidates:
                kinds.setdefault(str(c.hit.payload.get("source")), str(c.hit.payload.get("kind")))
            out.extend(self.source_lag.late(kinds, self.clock()))
        return out
    def _entities_now(self, query: ContextQuery, dense: np.ndarray, sparse: SparseVec | None,
                      scope: AccessScope, floor: float, timer: StageTimer) -> list[str]:
        """The entities of the records that answer the query today, for the facts of an
        ``as_of`` bundle: the store holds each record's current version only, so a record
        that changed since ``as_of`` is not among that bundle's items, yet its facts as of
        then are what was asked. Facts are looked up at ``as_of`` and access-checked, so
        nothing recorded later is served."""
        current = dataclasses.replace(query, as_of=None)
        limit = min(max(query.top_k * 3, 30), self.settings.prefetch_limit)
        with timer.stage("as_of_entities"):
            found = self._candidates(current, dense, sparse, scope, limit=limit,
                                     mode=query.mode, timer=StageTimer(telemetry=False),
                                     freshness=False)
        relevant = [c for c in found if c.relevance >= floor][:query.top_k]
        return list(dict.fromkeys(e for c in relevant for e in _entities(c)))

    def _recall(self, memory: MemoryProvider, query: ContextQuery, dense: np.ndarray,
                scope: AccessScope, ranked: list[Candidate],
                named: Sequence[str] = ()) -> Recalled:
        """Past interactions (at most ``memory_top_k``), then facts for the entities of the
        leading candidates in rank order (then ``named``), packed greedily into the memory
        share."""
        share = int(query.token_budget * self.settings.memory_token_share)
        entities = list(dict.fromkeys([*(e for c in ranked[:query.top_k] for e in _entities(c)),
                                       *named]))
        try:
            past = memory.interactions(user_id=query.user_id, session_id=query.session_id,
                                       dense=dense.tolist(), now=self.clock(), scope=scope)
            facts = memory.facts(entities, principals=scope.principals, as_of=query.as_of,
                                 history=query.fact_history, scope=scope)
        except Unavailable as exc:
            log.warning("memory unavailable; serving items only",
                        extra={"event": "memory_unavailable", "error": exc.message,
                               "cause": type(exc.__cause__).__name__})
            return Recalled(status="unavailable")
        rank = {entity: i for i, entity in enumerate(entities)}
        facts.sort(key=lambda f: rank.get(str(f["entity"]), len(rank)))
        recalled = Recalled(status="ok")
        for entry, bucket in [*((m, recalled.memory) for m in past),
                              *((f, recalled.facts) for f in facts)]:
            if recalled.tokens + entry["tokens"] <= share:
                bucket.append(entry)
                recalled.tokens += entry["tokens"]
        return recalled


@dataclass(slots=True)
class Recalled:
    """What memory adds to a bundle and the tokens it takes from the budget."""

    status: str
    memory: list[dict[str, Any]] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0


class MemoryProvider(Protocol):
    """What a bundle needs from memory (implemented by ``memory.recall.MemoryRecall``).
    Raises :class:`Unavailable` when memory cannot be read."""

    def interactions(self, *, user_id: str, session_id: str | None,
                     dense: Sequence[float], now: datetime,
                     scope: AccessScope | None = None) -> list[dict[str, Any]]: ...

    def facts(self, entity_keys: Sequence[str], *, principals: frozenset[str],
              as_of: datetime | None, history: bool,
              scope: AccessScope | None = None) -> list[dict[str, Any]]: ...


def _entities(cand: Candidate) -> list[str]:
    """The entity a chunk is a version of, and the entities its record relates to."""
    payload = cand.hit.payload
    related = payload.get("entities") or []
    key = str(payload.get("entity_key") or "")
    return [key, *(str(e) for e in related)] if key else [str(e) for e in related]


def _found(items: Sequence[BundleItem], ranked: Sequence[Candidate],
           floor: float) -> tuple[bool, str]:
    if items:
        exact = sum(1 for i in items if i.relevance >= 0.99)
        return True, (f"{len(items)} item(s) at or above min_relevance {floor}"
                      + (f", {exact} exact match(es)" if exact else ""))
    if not ranked:
        return False, "nothing visible to this user matched the query"
    best = max(c.relevance for c in ranked)
    if best < floor:
        return False, (f"no item reached min_relevance {floor} (best relevance "
                       f"{best:.3f}): the answer is probably not in the visible sources")
    return False, "items reached min_relevance but none fit the token budget"


def _dropped(cand: Candidate, why: str) -> dict[str, Any]:
    payload = cand.hit.payload
    return {"id": cand.hit.id, "source": payload.get("source"),
            "source_id": payload.get("source_id"), "title": payload.get("title") or "",
            "relevance": round(cand.relevance, 6), "score": round(cand.score, 6),
            "reason": why}


def explanation(cand: Candidate) -> dict[str, Any]:
    """Why an item ranks where it does: each leg's rank and score, the exact matches,
    the freshness factor and its clock, and what supersession, de-duplication and the
    budget did."""
    payload = cand.hit.payload
    return {
        "dense_rank": cand.dense_rank, "dense_score": round(cand.cosine, 6),
        "bm25_rank": cand.bm25_rank, "bm25_score": round(cand.bm25, 6),
        "feedback_score": None if cand.feedback_cosine is None
        else round(cand.feedback_cosine, 6),
        "fused": round(cand.fused, 6), "coverage": round(cand.coverage, 6),
        "relevance": round(cand.relevance, 6), "exact_matches": list(cand.exact),
        "freshness_factor": round(cand.freshness, 6),
        "freshness_clock": str(payload.get("updated_at_source") or "unknown"),
        "superseded_by": cand.superseded_by or None, "notes": list(cand.notes),
    }


def ranking_numbers(cand: Candidate) -> dict[str, Any]:
    """The explanation's numbers, ids and clock name only (no query or item words), as
    the dashboard shows them to analysts; copied from what ranking already computed."""
    return {
        "dense_rank": cand.dense_rank, "dense_score": round(cand.cosine, 6),
        "bm25_rank": cand.bm25_rank, "bm25_score": round(cand.bm25, 6),
        "fused": round(cand.fused, 6), "exact_match": bool(cand.exact),
        "freshness_factor": round(cand.freshness, 6),
        "freshness_clock": str(cand.hit.payload.get("updated_at_source") or "unknown"),
        "superseded": cand.superseded, "superseded_by": cand.superseded_by or None,
    }


def _item(cand: Candidate, text: str, tokens: int, explain: bool = False) -> BundleItem:
    payload = cand.hit.payload
    return BundleItem(
        id=cand.hit.id, kind=str(payload.get("kind")), source=str(payload.get("source")),
        source_id=str(payload.get("source_id")), title=str(payload.get("title") or ""),
        uri=str(payload.get("uri") or ""), text=text,
        updated_at=str(payload.get("updated_at")), score=round(cand.score, 6),
        relevance=round(cand.relevance, 6), freshness=round(cand.freshness, 6),
        citation=citation(payload), entity_key=str(payload.get("entity_key") or ""),
        doc_version=int(payload.get("doc_version") or 0), superseded=cand.superseded,
        tokens=tokens, updated_at_source=str(payload.get("updated_at_source") or "unknown"),
        superseded_by=cand.superseded_by or None,
        explain=explanation(cand) if explain else None,
    )
