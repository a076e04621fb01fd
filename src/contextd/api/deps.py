"""Typed dependencies: the runtime, and authentication with a role check per route.

Every route declares its roles through :func:`require_roles`; the route-table test fails
any route that forgets (see tests/api/test_auth.py).
"""

from __future__ import annotations

from typing import Annotated, Any, get_origin

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contextd.api.outcomes import AUTHENTICATED
from contextd.api.ratelimit import RateLimiter
from contextd.api.threads import in_thread
from contextd.core.errors import (
    AuthenticationFailed,
    InvalidInput,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
)
from contextd.core.telemetry import RATE_LIMITED
from contextd.process.discovery import local_admin
from contextd.runtime import Runtime
from contextd.state import audit
from contextd.state.keys import ApiKey, authenticate

bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer ctxd_...`")


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function on its thread pool, a hop per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def take_token(runtime: Runtime, limiter: RateLimiter, key: ApiKey, path: str) -> None:
    """One token from the key's bucket, or RateLimited (audited) when it is empty."""
    settings = runtime.settings
    decision = limiter.take(key.id, rate_per_minute=key.policy.rate_per_minute
                            or settings.rate_limit_per_minute,
                            burst=key.policy.burst or settings.rate_limit_burst)
    if not decision.allowed:
        RATE_LIMITED.labels(key.name).inc()
        audit.record_later(runtime.engine, action="request.rate_limited", outcome="rate_limited",
                           actor_key_id=key.id, actor=key.name, target=path,
                           details={"retry_after": round(decision.retry_after, 3)})
        raise RateLimited(f"rate limit of API key {key.id!r} exceeded; retry later",
                          retry_after=decision.retry_after)


def _admit(runtime: Runtime, limiter: RateLimiter, token: str, path: str) -> ApiKey:
    """Authenticate, then take one token from the key's bucket (one thread hop for both)."""
    settings = runtime.settings
    key = authenticate(runtime.engine, token, outage_grace=settings.db_outage_grace_seconds)
    take_token(runtime, limiter, key, path)
    return key


def check_key_limits(runtime: Runtime, key: ApiKey, body_size: int) -> None:
    """What an admitted key may still not do: act unbound where the service requires bound
    agent keys (403), send a body over its own size limit (413)."""
    if (key.role == "agent" and not key.policy.bound
            and runtime.settings.require_bound_agent_keys):
        raise PermissionDenied("this agent key is not bound to users, and the service "
                               "requires bound agent keys: bind it (PUT /v1/keys/{id}/policy)")
    max_bytes = key.policy.max_request_bytes
    if max_bytes is not None and body_size > max_bytes:
        raise PayloadTooLarge(f"request body exceeds this key's limit of {max_bytes} bytes",
                              details=[{"field": "body", "limit": max_bytes}])


def check_role(key: ApiKey, allowed: frozenset[str]) -> None:
    """PermissionDenied unless the key's role is one of ``allowed``."""
    if key.role not in allowed:
        raise PermissionDenied(
            f"role {key.role!r} may not call this endpoint; needs one of {sorted(allowed)}")


async def current_key(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The caller's active API key within its rate and request-size limits; else 401/429/413."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    local = local_admin(token, getattr(request.app.state, "local_token", None),
                        request.client.host if request.client else None)
    if local is not None:  # the service's own command-line tools (process.discovery)
        request.scope.setdefault("state", {})[AUTHENTICATED] = local.id
        return local
    limiter: RateLimiter = request.app.state.rate_limiter
    key = await in_thread(_admit, runtime, limiter, token, request.url.path)
    request.scope.setdefault("state", {})[AUTHENTICATED] = key.id
    size = len(await request.body()) if key.policy.max_request_bytes is not None else 0
    check_key_limits(runtime, key, size)
    return key


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that admits keys with one of ``roles`` (admin is always admitted)."""
    allowed = frozenset((*roles, "admin"))

    async def check(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
        check_role(key, allowed)
        return key

    check.required_roles = allowed  # type: ignore[attr-defined]
    return check


agent_roles = require_roles("agent")
AGENT_ROLES: frozenset[str] = agent_roles.required_roles
AgentKey = Annotated[ApiKey, Depends(agent_roles)]
AnalystKey = Annotated[ApiKey, Depends(require_roles("analyst"))]
AdminKey = Annotated[ApiKey, Depends(require_roles())]
ReaderKey = Annotated[ApiKey, Depends(require_roles("analyst"))]


def _list_query_params(dependant: Any) -> set[str]:
    """Query parameters of a route (and its dependencies) declared as sequences."""
    if dependant is None:
        return set()
    names = {f.alias for f in dependant.query_params
             if get_origin(f.field_info.annotation) in (list, set, tuple)
             or f.field_info.annotation in (list, set, tuple)}
    for sub in dependant.dependencies:
        names |= _list_query_params(sub)
    return names


async def single_valued_query(request: Request) -> None:
    """Refuse a repeated query parameter the route takes once (``?since=a&since=b``) with
    422 naming it, instead of silently using the last value."""
    params = request.query_params
    repeated = {k for k in params if len(params.getlist(k)) > 1}
    if repeated:
        repeated -= _list_query_params(getattr(request.scope.get("route"), "dependant", None))
    if repeated:
        name = sorted(repeated)[0]
        raise InvalidInput(f"query parameter {name!r} given more than once",
                           details=[{"field": f"query.{name}"}])
