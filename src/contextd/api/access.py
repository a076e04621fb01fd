"""What ``POST /v1/context`` applies per key besides the ACL: the user binding, output
limits, redaction, audit.

Kept out of the router so the route stays a short sequence of calls.
"""

from __future__ import annotations

import time
from functools import lru_cache

from sqlalchemy.engine import Engine

from contextd.api.binding import acting_user
from contextd.api.schemas import ContextRequestIn
from contextd.core.errors import InvalidInput
from contextd.core.settings import Settings
from contextd.core.telemetry import REDACTIONS
from contextd.core.types import AccessScope
from contextd.retrieval.redaction import Redactor
from contextd.retrieval.schemas import ContextBundle
from contextd.runtime import Runtime
from contextd.state import audit
from contextd.state.bundles import query_hash
from contextd.state.keys import ApiKey, KeyPolicy
from contextd.state.principals import effective_principals


def context_scope(engine: Engine, *, user_id: str, key: KeyPolicy,
                  sources: frozenset[str] | None, kinds: frozenset[str] | None,
                  outage_grace: float = 0.0) -> AccessScope:
    """The visible set of a context request: the user's ACL principals (read now, never
    cached), narrowed by the key's scope and then by the request's own filters. Applied
    inside the vector query by both store adapters; it can only ever shrink."""
    principals = effective_principals(engine, user_id=user_id, outage_grace=outage_grace)
    return AccessScope(principals).narrowed(sources=key.sources, kinds=key.kinds).narrowed(
        sources=sources, kinds=kinds)


def bound_request(runtime: Runtime, key: ApiKey,
                  body: ContextRequestIn) -> tuple[ContextRequestIn, str]:
    """``body`` and the user it acts for: its own ``user_id`` if the key may act for it
    (else 403), the key's one bound user if left out (else 422)."""
    user_id = acting_user(runtime.engine, key, body.user_id,
                          outage_grace=runtime.settings.db_outage_grace_seconds)
    if user_id != body.user_id:
        body = body.model_copy(update={"user_id": user_id})
    return body, user_id


def apply_key_limits(key: ApiKey, body: ContextRequestIn) -> ContextRequestIn:
    """The request held to the key's ``max_token_budget`` / ``max_top_k``.

    A default the caller did not send is lowered to the key's limit (a key limited to
    top_k 5 gets 5 items when it sends no top_k); a value the caller did send past the
    limit is refused with 422, since silently serving less than asked would hide it.
    """
    policy = key.policy
    lowered: dict[str, int] = {}
    for field, asked, limit in (("token_budget", body.token_budget, policy.max_token_budget),
                                ("top_k", body.top_k, policy.max_top_k)):
        if limit is None or asked <= limit:
            continue
        if field not in body.model_fields_set:
            lowered[field] = limit
            continue
        raise InvalidInput(f"{field} exceeds this key's limit of {limit}",
                           details=[{"field": field, "limit": limit,
                                     "message": f"at most {limit} for this key"}])
    return body.model_copy(update=lowered) if lowered else body


@lru_cache(maxsize=8)
def _redactor(patterns: tuple[tuple[str, str], ...], defaults: bool) -> Redactor:
    return Redactor(dict(patterns), defaults=defaults)


def redact_bundle(settings: Settings, bundle: ContextBundle, budget: int) -> dict[str, int]:
    """Mask the configured patterns in the bundle's text, keeping it within ``budget``;
    counts per rule (also metered)."""
    redactor = _redactor(tuple(sorted(settings.redact_patterns.items())),
                         settings.redact_default_patterns)
    counts = redactor.redact_bundle(bundle, budget)
    if settings.telemetry_enabled:
        for rule, n in counts.items():
            REDACTIONS.labels(rule).inc(n)
    return counts


def audit_context(runtime: Runtime, key: ApiKey, body: ContextRequestIn, *, outcome: str,
                  bundle: ContextBundle | None = None, started: float | None = None,
                  redactions: dict[str, int] | None = None) -> None:
    """One ``context.request`` audit entry: who asked for whom, what was served, how fast
    (queued for the deferred writer: ``audit.record_later``)."""
    settings = runtime.settings
    if bundle is not None:
        latency = float(bundle.stats.get("latency_ms", 0.0))
    else:
        latency = round((time.perf_counter() - (started or time.perf_counter())) * 1000, 3)
    details: dict[str, object] = {"token_budget": body.token_budget, "top_k": body.top_k}
    if bundle is not None:
        details |= {"bundle_id": bundle.bundle_id, "token_count": bundle.token_count}
    if redactions:
        details["redactions_by_rule"] = redactions
    audit.record_later(
        runtime.engine, action="context.request", actor_key_id=key.id, actor=key.name,
        outcome=outcome, user_id=body.user_id, query_hash=query_hash(body.query),
        query=body.query if settings.audit_query_text else None,
        item_ids=[i.id for i in bundle.items] if bundle else (), latency_ms=latency,
        redactions=sum((redactions or {}).values()), details=details)
