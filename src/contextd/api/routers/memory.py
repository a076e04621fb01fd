"""Memory of past interactions: record, list, feedback, forget a user.

Every route that takes a user goes through the key's binding (``api.binding``): a bound
key acts for its users only. An interaction is recorded with the scope (sources, kinds) of
the key and bundle that produced it and listed only to keys whose scope covers it; the
scope is part of the SQL query, never a filter over its results.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from contextd.api.binding import UsersInQuery, acting_user, may_act_for
from contextd.api.deps import AdminKey, RuntimeDep, require_roles
from contextd.api.schemas import (
    FeedbackIn,
    FeedbackOut,
    ForgottenOut,
    InteractionIn,
    InteractionOut,
    InteractionPageOut,
)
from contextd.api.threads import in_thread
from contextd.core.errors import InvalidInput
from contextd.core.types import utcnow
from contextd.memory.feedback import NewFeedback, record_feedback
from contextd.memory.interactions import (
    NewInteraction,
    forget_user,
    list_interactions,
    record_interaction,
)
from contextd.state.bundles import requested_kinds
from contextd.state.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["memory"])

WriterKey = Annotated[ApiKey, Depends(require_roles("agent"))]
ReaderKey = Annotated[ApiKey, Depends(require_roles("agent", "analyst"))]
UserId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s:]+$")]


@router.post("/interactions", response_model=InteractionOut, status_code=201,
             responses={401: {}, 403: {}, 413: {}, 422: {}})
async def post_interaction(body: InteractionIn, runtime: RuntimeDep,
                           key: WriterKey) -> InteractionOut:
    """Record what a user asked and what they were answered, so later bundles recall it."""
    limit = runtime.settings.max_interaction_chars
    problems: list[dict[str, str]] = []
    if not body.query.strip():
        problems.append({"field": "query", "message": "must not be blank"})
    for name, value in (("query", body.query), ("summary", body.summary)):
        if len(value) > limit:
            problems.append({"field": name, "message": f"exceeds {limit} characters"})
    if body.created_at is not None and body.created_at > utcnow():
        problems.append({"field": "created_at", "message": "is in the future"})
    if problems:
        raise InvalidInput(f"invalid request: {', '.join(p['field'] for p in problems)}",
                           details=problems)
    user_id = await in_thread(acting_user, runtime.engine, key, body.user_id,
                              outage_grace=runtime.settings.db_outage_grace_seconds)
    kinds = key.policy.kinds
    if body.bundle_id is not None:  # the bundle's own kinds filter narrows it further
        asked = await in_thread(requested_kinds, runtime.engine, body.bundle_id)
        kinds = asked if kinds is None else (kinds if asked is None else kinds & asked)
    new = NewInteraction(user_id=user_id, query=body.query.strip(),
                         summary=body.summary.strip(), session_id=body.session_id,
                         bundle_id=body.bundle_id, outcome=body.outcome,
                         entities=body.entities, agent=key.name, key_id=key.id,
                         created_at=body.created_at, sources=key.policy.sources, kinds=kinds)
    saved = await in_thread(record_interaction, runtime.memory_engine, runtime.memory_store,
                            runtime.dense, runtime.sparse, new)
    return InteractionOut(**asdict(saved))


@router.get("/interactions", response_model=InteractionPageOut,
            responses={401: {}, 403: {}, 422: {}})
async def get_interactions(
    runtime: RuntimeDep, key: ReaderKey, users: UsersInQuery,
    session_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    entity: Annotated[str | None, Query(min_length=3, max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> InteractionPageOut:
    """Interactions by user, session and/or entity, newest first; pass ``next_cursor`` back
    as ``cursor`` for the next page. A key reads only the users it may act for (an
    analyst's needs an explicit binding) and interactions recorded within its scope."""
    if users is None and session_id is None and entity is None:
        raise InvalidInput("give at least one of user_id, session_id, entity",
                           details=[{"field": "query.user_id"}])
    page = await in_thread(list_interactions, runtime.memory_engine, user_ids=users,
                           session_id=session_id, entity=entity, limit=limit, cursor=cursor,
                           sources=key.policy.sources, kinds=key.policy.kinds)
    return InteractionPageOut(items=[InteractionOut(**asdict(i)) for i in page.items],
                              next_cursor=page.next_cursor)


@router.post("/feedback", response_model=FeedbackOut, status_code=201,
             responses={401: {}, 403: {}, 404: {}, 422: {}})
async def post_feedback(body: FeedbackIn, runtime: RuntimeDep, key: WriterKey) -> FeedbackOut:
    """Rate a served bundle and say which of its items were used."""
    new = NewFeedback(bundle_id=body.bundle_id, rating=body.rating,
                      used_item_ids=body.used_item_ids, comment=body.comment,
                      interaction_id=body.interaction_id, agent=key.name, key_id=key.id)

    def allowed(user_id: str) -> bool:  # a bundle of another user is "not served"
        return may_act_for(runtime.engine, key, user_id,
                           outage_grace=runtime.settings.db_outage_grace_seconds)

    saved = await in_thread(record_feedback, runtime.engine, runtime.memory_engine, new,
                            allowed)
    return FeedbackOut(**asdict(saved))


@router.delete("/users/{user_id}/memory", response_model=ForgottenOut,
               responses={401: {}, 403: {}, 422: {}})
async def delete_user_memory(user_id: UserId, runtime: RuntimeDep,
                             key: AdminKey) -> ForgottenOut:
    """Forget a user: their interactions (rows and vectors), feedback and bundles served."""
    await in_thread(acting_user, runtime.engine, key, user_id, field="path.user_id")
    forgotten = await in_thread(forget_user, runtime.memory_engine, runtime.engine,
                                runtime.memory_store, user_id=user_id)
    return ForgottenOut(**asdict(forgotten))
