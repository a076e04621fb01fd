"""Which users a key may act for: the one check behind every route that takes a user.

A key's policy may bind it to users (``user_ids``) and/or to the members of a group
(``group``). A bound key acts only for them: a request for any other user is a 403 on
every route, and ``user_id`` may be left out when the binding names exactly one user.
An unbound agent or admin key may act for any user; an unbound analyst key for none
(analysts read aggregates; a policy binding grants them named users explicitly).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.engine import Engine

from contextd.api.deps import RuntimeDep, current_key
from contextd.api.threads import in_thread
from contextd.core.errors import InvalidInput, PermissionDenied
from contextd.state.keys import ApiKey
from contextd.state.principals import effective_principals


def may_act_for(engine: Engine, key: ApiKey, user_id: str, *,
                outage_grace: float = 0.0) -> bool:
    """True when ``key`` may act for (and read the memory of) ``user_id``."""
    policy = key.policy
    if not policy.bound:
        return key.role != "analyst"
    if policy.user_ids is not None and user_id in policy.user_ids:
        return True
    if policy.group is None:
        return False
    principals = effective_principals(engine, user_id=user_id, outage_grace=outage_grace)
    return f"group:{policy.group}" in principals


def acting_user(engine: Engine, key: ApiKey, user_id: str | None, *,
                outage_grace: float = 0.0, field: str = "user_id") -> str:
    """The user a request acts for: ``user_id`` if the key may act for it (else 403), or
    the key's one bound user when ``user_id`` is left out (else 422 naming ``field``)."""
    if user_id is None:
        implied = key.policy.implied_user
        if implied is None:
            raise InvalidInput(f"{field} is required: this key is not bound to exactly one "
                               "user", details=[{"field": field}])
        return implied
    if not may_act_for(engine, key, user_id, outage_grace=outage_grace):
        raise PermissionDenied(f"this API key may not act for user {user_id!r}",
                               details=[{"field": field}])
    return user_id


async def user_in_query(
    runtime: RuntimeDep, key: Annotated[ApiKey, Depends(current_key)],
    user_id: Annotated[str | None, Query(
        min_length=1, max_length=200, pattern=r"^[^\s:]+$",
        description="The user whose access applies; a key bound to exactly one user may "
                    "leave it out, any user outside a key's binding is a 403.")] = None,
) -> str:
    """``?user_id=`` of a route acting for one user, checked against the key's binding."""
    return await in_thread(acting_user, runtime.engine, key, user_id,
                           outage_grace=runtime.settings.db_outage_grace_seconds,
                           field="query.user_id")


UserInQuery = Annotated[str, Depends(user_in_query)]


def readable_users(engine: Engine, key: ApiKey, user_id: str | None, *,
                   outage_grace: float = 0.0) -> frozenset[str] | None:
    """The users a read of ``key`` covers: ``{user_id}`` if given (403 unless the key may
    act for it); else every user for an unbound agent or admin key (None), the bound list
    of a key bound by ``user_ids`` only; else 422 (a group binding or an analyst key names
    its user)."""
    if user_id is not None:
        return frozenset({acting_user(engine, key, user_id, outage_grace=outage_grace,
                                      field="query.user_id")})
    policy = key.policy
    if not policy.bound and key.role != "analyst":
        return None
    if policy.group is None and policy.user_ids is not None:
        return policy.user_ids
    raise InvalidInput("user_id is required: this key reads named users only",
                       details=[{"field": "query.user_id"}])


async def users_in_query(
    runtime: RuntimeDep, key: Annotated[ApiKey, Depends(current_key)],
    user_id: Annotated[str | None, Query(min_length=1, max_length=200,
                                         pattern=r"^[^\s:]+$")] = None,
) -> frozenset[str] | None:
    """``?user_id=`` checked against the key's binding (see :func:`readable_users`)."""
    return await in_thread(readable_users, runtime.engine, key, user_id,
                           outage_grace=runtime.settings.db_outage_grace_seconds)


UsersInQuery = Annotated[frozenset[str] | None, Depends(users_in_query)]
