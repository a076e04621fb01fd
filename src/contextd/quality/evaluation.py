"""Run a golden set against the live index under one configuration, store the run, compare
it with the set's baseline and alert on regressions.

Each query goes through the same bundle path as ``POST /v1/context`` (scoped to the
query's user and the running key's sources and kinds inside the engine, packed into the
token budget); documents are ranked by their first appearance in the bundle. A run is
shown only to keys that see its golden set.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.store import SearchMode
from contextd.core.telemetry import span
from contextd.core.types import AccessScope, iso
from contextd.quality.alerts import compare, publish_run, raise_alert
from contextd.quality.golden import UNRESTRICTED, Viewer, principals_of, queries_of
from contextd.retrieval.evaluation import ndcg_at, recall_at, reciprocal_rank
from contextd.retrieval.schemas import ContextQuery
from contextd.retrieval.service import Retriever
from contextd.state.db import session_scope
from contextd.state.tables import EvalRunRow, GoldenSetRow

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "bm25"]
_SEARCH_MODE: dict[str, SearchMode] = {"hybrid": "hybrid", "dense": "dense", "bm25": "sparse"}


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """How the index is queried: the served default is hybrid with freshness on."""

    mode: Mode = "hybrid"
    freshness: bool = True
    token_budget: int = 2000
    top_k: int = 20


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    threshold: float
    webhook_url: str | None


def bundle_ranking(retriever: Retriever, engine: Engine, *, text: str, user_id: str,
                   kinds: tuple[str, ...], sources: list[str], config: EvalConfig,
                   viewer: Viewer = UNRESTRICTED) -> list[str]:
    """Document ids (``source_id``) in order of first appearance in the served bundle."""
    kind_set = frozenset(kinds) if kinds else None
    source_set = frozenset(sources) if sources else None
    query = ContextQuery(query=text, user_id=user_id, token_budget=config.token_budget,
                         top_k=config.top_k, kinds=kind_set, sources=source_set,
                         freshness_enabled=config.freshness, mode=_SEARCH_MODE[config.mode])

    def scope() -> AccessScope:
        return AccessScope(principals=principals_of(engine, user_id), sources=source_set,
                           kinds=kind_set).narrowed(sources=viewer.sources,
                                                    kinds=viewer.kinds)

    bundle = retriever.bundle(query, scope)
    ranked: list[str] = []
    for item in bundle.items:
        if item.source_id not in ranked:
            ranked.append(item.source_id)
    return ranked


def score_golden_set(retriever: Retriever, engine: Engine, golden: GoldenSetRow,
                     config: EvalConfig, viewer: Viewer = UNRESTRICTED,
                     ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Mean nDCG@10, MRR and recall@bundle, and the per-query figures behind them."""
    per_query: list[dict[str, Any]] = []
    for query in queries_of(golden):
        judged = golden.qrels.get(query.id, {})
        relevant = {d: g for d, g in judged.items() if g > 0}
        ranked = bundle_ranking(retriever, engine, text=query.text, user_id=query.user_id,
                                kinds=query.kinds, sources=golden.sources, config=config,
                                viewer=viewer)
        per_query.append({"id": query.id, "ndcg@10": ndcg_at(ranked, relevant),
                          "mrr": reciprocal_rank(ranked, relevant),
                          "recall@bundle": recall_at(ranked, relevant, k=len(ranked)),
                          "ranked": ranked[:10]})
    count = len(per_query) or 1
    metrics = {name: sum(q[name] for q in per_query) / count
               for name in ("ndcg@10", "mrr", "recall@bundle")}
    metrics["queries"] = float(len(per_query))
    return metrics, per_query


def run_golden_set(retriever: Retriever, engine: Engine, golden: GoldenSetRow,
                   config: EvalConfig, policy: AlertPolicy,
                   viewer: Viewer = UNRESTRICTED) -> EvalRunRow:
    """Score, store, compare with the baseline (if pinned), alert on regressions."""
    started = time.perf_counter()
    with span("quality.eval_run", **{"contextd.golden_set": golden.name,
                                     "contextd.mode": config.mode}):
        metrics, per_query = score_golden_set(retriever, engine, golden, config, viewer)
    run = EvalRunRow(id=secrets.token_hex(8), origin="api", golden_set_id=golden.id,
                     dataset=golden.name, config=asdict(config), metrics=metrics,
                     per_query=per_query, duration_ms=(time.perf_counter() - started) * 1000)
    baseline = get_run(engine, golden.baseline_run_id) if golden.baseline_run_id else None
    if baseline is not None:
        deltas = compare(metrics, baseline.metrics, policy.threshold)
        regressions = {m: d for m, d in deltas.items() if d["regressed"]}
        run.baseline_run_id = baseline.id
        run.regressed = bool(regressions)
        run.comparison = {"threshold": policy.threshold, "metrics": deltas}
        if regressions:
            run.comparison["alert"] = raise_alert(
                golden_set=golden.name, run_id=run.id, baseline_run_id=baseline.id,
                config=run.config, regressions=regressions, threshold=policy.threshold,
                webhook_url=policy.webhook_url)
    with session_scope(engine) as session:
        session.add(run)
    publish_run(golden.name, run.config, metrics)
    log.info("eval run", extra={"event": "eval_run", "run_id": run.id,
                                "golden_set": golden.name, "config": run.config,
                                "metrics": metrics, "regressed": run.regressed})
    return run


def store_cli_run(engine: Engine, *, dataset: str, mode: str,
                  metrics: dict[str, float]) -> EvalRunRow:
    """A ``contextd eval`` result (a temporary index of a BEIR corpus, all documents dated
    alike, so freshness plays no part), kept with the golden-set runs."""
    run = EvalRunRow(id=secrets.token_hex(8), origin="cli", dataset=dataset,
                     config={"mode": mode, "freshness": False, "index": "temporary"},
                     metrics=dict(metrics))
    with session_scope(engine) as session:
        session.add(run)
    return run


def _visible_sets(session: Session, viewer: Viewer) -> set[str] | None:
    """Ids of the golden sets ``viewer`` sees; None: all of them."""
    if viewer is UNRESTRICTED:
        return None
    return {r.id for r in session.exec(select(GoldenSetRow)) if viewer.sees(r)}


def get_run(engine: Engine, run_id: str, viewer: Viewer = UNRESTRICTED) -> EvalRunRow | None:
    """The run, or None when unknown or of a golden set ``viewer`` does not see."""
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(EvalRunRow, run_id)
        if run is None or run.golden_set_id is None:
            return run
        visible = _visible_sets(session, viewer)
    return run if visible is None or run.golden_set_id in visible else None


def list_runs(engine: Engine, *, golden_set_id: str | None = None, limit: int = 50,
              before: datetime | None = None,
              viewer: Viewer = UNRESTRICTED) -> list[EvalRunRow]:
    """Newest first; only runs created at or before ``before`` when given; runs of sets
    ``viewer`` does not see are left out in the query."""
    statement = select(EvalRunRow).order_by(col(EvalRunRow.created_at).desc()).limit(limit)
    if before is not None:
        statement = statement.where(col(EvalRunRow.created_at) <= before)
    if golden_set_id:
        statement = statement.where(EvalRunRow.golden_set_id == golden_set_id)
    with Session(engine, expire_on_commit=False) as session:
        visible = _visible_sets(session, viewer)
        if visible is not None:
            statement = statement.where(or_(col(EvalRunRow.golden_set_id).is_(None),
                                            col(EvalRunRow.golden_set_id).in_(sorted(visible))))
        return list(session.exec(statement))


def run_json(run: EvalRunRow, *, per_query: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": run.id, "created_at": iso(run.created_at), "origin": run.origin,
        "golden_set_id": run.golden_set_id, "dataset": run.dataset, "config": run.config,
        "metrics": run.metrics, "baseline_run_id": run.baseline_run_id,
        "comparison": run.comparison, "regressed": run.regressed,
        "duration_ms": round(run.duration_ms, 3),
    }
    if per_query:
        out["per_query"] = run.per_query
    return out
