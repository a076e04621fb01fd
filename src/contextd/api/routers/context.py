"""``POST /v1/context``: a ranked, fresh, access-scoped bundle for an agent's user."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, BackgroundTasks, Response

from contextd.api.access import (
    apply_key_limits,
    audit_context,
    bound_request,
    context_scope,
    redact_bundle,
)
from contextd.api.deps import (
    AGENT_ROLES,
    AgentKey,
    RuntimeDep,
    check_key_limits,
    check_role,
    take_token,
)
from contextd.api.outcomes import CONTEXT_PATH
from contextd.api.ratelimit import RateLimiter
from contextd.api.schemas import ContextRequestIn, ContextResponse
from contextd.api.threads import in_thread
from contextd.core.errors import ContextdError, InvalidInput
from contextd.core.settings import Settings
from contextd.core.telemetry import CONTEXT_ITEMS, MEMORY_RECALL, TOKENS_SERVED
from contextd.core.types import AccessScope
from contextd.retrieval.schemas import ContextBundle, ContextQuery, bundle_json
from contextd.retrieval.service import StageTimer
from contextd.retrieval.sources import check_sources, known_sources
from contextd.runtime import Runtime
from contextd.state import deferred
from contextd.state.bundles import bundle_row
from contextd.state.costs import cost_row
from contextd.state.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["context"])
log = logging.getLogger(__name__)


@router.post("/context", response_model=None,
             responses={200: {"model": ContextResponse}, 401: {}, 403: {}, 413: {}, 422: {}})
async def post_context(body: ContextRequestIn, runtime: RuntimeDep, key: AgentKey,
                       background: BackgroundTasks) -> Response:
    """Build a context bundle of what ``user_id`` may see, packed into ``token_budget``.

    The key is checked first (``AgentKey``); then, off the event loop, the query embeds on
    the model thread while this thread resolves the user's principals; then search, rank,
    pack."""
    return await in_thread(serve_context, body, runtime, key, background)


def serve_context_as(raw: bytes, runtime: Runtime, limiter: RateLimiter, key: ApiKey,
                     background: BackgroundTasks) -> Response:
    """``POST /v1/context`` with the JSON body ``raw`` for ``key``, which the caller has
    already authenticated (the MCP endpoint's gate, from the same bearer), in one blocking
    call: what the route's dependencies do once the key is known (rate limit, the key's
    own limits, role), the body's validation, then :func:`serve_context`. Errors raise as
    they would in the route."""
    take_token(runtime, limiter, key, CONTEXT_PATH)
    check_key_limits(runtime, key, len(raw))
    check_role(key, AGENT_ROLES)
    return serve_context(ContextRequestIn.model_validate_json(raw), runtime, key, background)


def serve_context(body: ContextRequestIn, runtime: Runtime, key: ApiKey,
                  background: BackgroundTasks) -> Response:
    """The blocking part of ``POST /v1/context`` (directory, model, engine), off the loop."""
    started = time.perf_counter()
    with runtime.cpu_slots.held():  # released while the query embeds (core.cpu_slots)
        try:
            body, user_id = bound_request(runtime, key, body)
            return _serve_context(body, user_id, runtime, key, background)
        except ContextdError as exc:  # refused requests are audited too
            audit_context(runtime, key, body, outcome=exc.code, started=started)
            raise


def _serve_context(body: ContextRequestIn, user_id: str, runtime: Runtime, key: ApiKey,
                   background: BackgroundTasks) -> Response:
    settings = runtime.settings
    query = body.query.strip()
    if not query:
        raise InvalidInput("query must not be blank", details=[{"field": "query"}])
    if len(query) > settings.max_query_chars:
        raise InvalidInput(f"query exceeds {settings.max_query_chars} characters",
                           details=[{"field": "query"}])
    if body.token_budget > settings.max_token_budget:
        raise InvalidInput(f"token_budget exceeds the limit of {settings.max_token_budget}",
                           details=[{"field": "token_budget"}])
    if body.top_k > settings.max_top_k:
        raise InvalidInput(f"top_k exceeds the limit of {settings.max_top_k}",
                           details=[{"field": "top_k"}])
    body = apply_key_limits(key, body)
    if body.sources:
        check_sources(body.sources, known_sources(runtime.engine), key.policy.sources)
    freshness = body.freshness
    if freshness and any(v <= 0 for v in freshness.half_life_days.values()):
        raise InvalidInput("half_life_days values must be > 0",
                           details=[{"field": "freshness.half_life_days"}])
    timer = StageTimer(telemetry=settings.telemetry_enabled, deferred=True)
    sources = frozenset(body.sources) if body.sources else None
    kinds = frozenset(body.kinds) if body.kinds else None

    def scope() -> AccessScope:
        # Resolved while the query embeds (see Retriever.search); read on every request.
        with timer.stage("principals"):
            return context_scope(runtime.engine, user_id=user_id, key=key.policy,
                                 sources=sources, kinds=kinds,
                                 outage_grace=settings.db_outage_grace_seconds)

    request = ContextQuery(
        query=query, user_id=user_id, token_budget=body.token_budget, top_k=body.top_k,
        kinds=kinds, sources=sources,
        half_life_days={str(k): v for k, v in freshness.half_life_days.items()}
        if freshness else {},
        freshness_enabled=freshness.enabled if freshness else True,
        session_id=body.session_id, include_memory=body.include_memory, as_of=body.as_of,
        fact_history=body.fact_history, min_relevance=body.min_relevance,
        explain=body.explain,
    )
    try:
        bundle = runtime.retriever.bundle(request, scope, timer, memory=runtime.memory_recall)
    except BaseException:
        timer.emit()  # a failed request's stages are traced too
        raise
    redactions = redact_bundle(settings, bundle, body.token_budget)
    # Telemetry after the response is sent: the agent does not wait for it.
    background.add_task(report_served, settings, key, user_id, query, bundle, timer)
    # The rows are queued before the response goes out and written by the deferred writer
    # (state.deferred): every read of this process made after the agent has its answer
    # finds them, and no request waits on SQLite's one writer.
    cost = bundle.stats["cost"]
    deferred.add(
        runtime.engine,
        cost_row(kind="context", ref=bundle.bundle_id, agent=key.name,
                 embed_tokens=cost["embed_tokens"],
                 embed_cpu_seconds=cost["embed_cpu_seconds"], served_tokens=bundle.token_count),
        bundle_row(bundle, key_id=key.id, agent=key.name, session_id=body.session_id,
                   kinds=sorted(kinds or ()), token_budget=body.token_budget,
                   keep_query=settings.log_queries))
    audit_context(runtime, key, body, outcome="ok", bundle=bundle, redactions=redactions)
    # The bundle is built from typed values; serialize it once instead of re-validating.
    return Response(content=bundle_json(bundle), media_type="application/json")


def report_served(settings: Settings, key: ApiKey, user_id: str, query: str,
                  bundle: ContextBundle, timer: StageTimer) -> None:
    """The served bundle's stage spans, metrics and ``context served`` log line (with the
    request's id and trace: background tasks keep the request's context)."""
    timer.emit()
    if settings.telemetry_enabled:
        TOKENS_SERVED.labels(key.name).inc(bundle.token_count)
        CONTEXT_ITEMS.observe(len(bundle.items))
        MEMORY_RECALL.labels(bundle.memory_status).inc()
    log.info("context served", extra={
        "event": "context", "key_id": key.id, "user_id": user_id,
        "items": len(bundle.items), "token_count": bundle.token_count,
        "memory": len(bundle.memory), "memory_status": bundle.memory_status,
        "stages_ms": bundle.stats["stages_ms"], "latency_ms": bundle.stats["latency_ms"],
        **({"query": query} if settings.log_queries else {}),
    })
