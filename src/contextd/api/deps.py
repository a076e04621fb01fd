"""Typed dependencies: the runtime, and authentication with a role check per route.

Every route declares its roles through :func:`require_roles`; the route-table test fails
any route that forgets (see tests/api/test_auth.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contextd.api.threads import in_thread
from contextd.core.errors import AuthenticationFailed, PermissionDenied
from contextd.memory.keys import ApiKey, authenticate
from contextd.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer ctxd_...`")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def current_key(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The caller's active API key, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
    return await in_thread(authenticate, runtime.engine, credentials.credentials,
                           outage_grace=runtime.settings.db_outage_grace_seconds)


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that admits keys with one of ``roles`` (admin is always admitted)."""
    allowed = frozenset((*roles, "admin"))

    async def check(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
        if key.role not in allowed:
            raise PermissionDenied(
                f"role {key.role!r} may not call this endpoint; needs one of {sorted(allowed)}")
        return key

    check.required_roles = allowed  # type: ignore[attr-defined]
    return check


AgentKey = Annotated[ApiKey, Depends(require_roles("agent"))]
AnalystKey = Annotated[ApiKey, Depends(require_roles("analyst"))]
AdminKey = Annotated[ApiKey, Depends(require_roles())]
ReaderKey = Annotated[ApiKey, Depends(require_roles("analyst"))]
