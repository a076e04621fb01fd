"""Browser sessions for the dashboard: a random token in an HttpOnly cookie.

Only the token's SHA-256 is stored; the API key behind a session is re-read on every
use, so revoking the key (or a role change) ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete

from contextd.core.types import as_utc, utcnow
from contextd.state.db import session_scope
from contextd.state.keys import ApiKey
from contextd.state.tables import ApiKeyRow, DashboardSession


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(engine: Engine, *, key_id: str, hours: float) -> str:
    """A new session for ``key_id``; returns the token (kept only by the browser)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope(engine) as session:
        session.exec(delete(DashboardSession).where(
            col(DashboardSession.expires_at) < now))
        session.add(DashboardSession(token_hash=_hash(token), key_id=key_id, created_at=now,
                                     expires_at=now + timedelta(hours=hours)))
    return token


def session_key(engine: Engine, token: str) -> ApiKey | None:
    """The active key behind an unexpired session, or None."""
    if not token or len(token) > 200:
        return None
    with Session(engine) as session:
        row = session.get(DashboardSession, _hash(token))
        if row is None or as_utc(row.expires_at) <= utcnow():
            return None
        key = session.get(ApiKeyRow, row.key_id)
        if key is None or key.revoked_at is not None:
            return None
        return ApiKey(key.id, key.name, key.role, key.created_at, key.last_used_at,
                      key.revoked_at)


def close_session(engine: Engine, token: str) -> None:
    with session_scope(engine) as session:
        row = session.get(DashboardSession, _hash(token))
        if row is not None:
            session.delete(row)
