"""Who is looking at the dashboard: a bearer key (scripts) or a login session (browsers).

A browser logs in once with an analyst or admin key on ``/dashboard/login``; the server
answers with an HttpOnly, SameSite=Strict cookie holding a random session token (never
the key). No credentials at all means "show the login form"; bad bearer keys are 401 and
the wrong role 403, as on the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contextd.api.deps import RuntimeDep
from contextd.api.threads import in_thread
from contextd.core.errors import PermissionDenied
from contextd.state.keys import ApiKey, authenticate
from contextd.state.sessions import session_key

COOKIE = "contextd_dashboard"
DASHBOARD_ROLES = frozenset({"analyst", "admin"})

_bearer = HTTPBearer(auto_error=False)


def check_role(key: ApiKey) -> ApiKey:
    if key.role not in DASHBOARD_ROLES:
        raise PermissionDenied(f"role {key.role!r} may not view the dashboard; needs one of "
                               f"{sorted(DASHBOARD_ROLES)}")
    return key


async def dashboard_viewer(
    request: Request, runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey | None:
    """The viewer's key, or None when the browser must log in first."""
    if credentials is not None:
        return check_role(await in_thread(authenticate, runtime.engine,
                                          credentials.credentials))
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    key = await in_thread(session_key, runtime.engine, token)
    return check_role(key) if key is not None else None


dashboard_viewer.required_roles = DASHBOARD_ROLES  # type: ignore[attr-defined]
Viewer = Annotated[ApiKey | None, Depends(dashboard_viewer)]
