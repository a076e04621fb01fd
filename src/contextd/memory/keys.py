"""API keys: random secrets shown once, stored as SHA-256, checked in constant time.

A key reads ``ctxd_<id>_<secret>``: the id finds the row, the secret is compared by
hash. Secrets carry 256 bits of randomness, so a fast hash is enough (no password
stretching needed), and it keeps authentication off the latency budget.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.errors import AuthenticationFailed, InvalidInput, NotFound
from contextd.core.types import as_utc, utcnow
from contextd.memory.db import session_scope
from contextd.memory.tables import ApiKeyRow

ROLES = ("admin", "agent", "analyst")
_PREFIX = "ctxd_"
_LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the rest of the service sees it (never with its secret)."""

    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, row.role, row.created_at, row.last_used_at, row.revoked_at)


def create_key(engine: Engine, *, name: str, role: str) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full key string, which is never stored or shown again."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {list(ROLES)}", details={"field": "role"})
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters", details={"field": "name"})
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKeyRow(id=key_id, name=name, role=role, secret_hash=_hash(secret))
    with session_scope(engine) as session:
        session.add(row)
    return _public(row), f"{_PREFIX}{key_id}_{secret}"


def authenticate(engine: Engine, token: str) -> ApiKey:
    """The active key for ``token``, or AuthenticationFailed (same message for every cause)."""
    failure = AuthenticationFailed("invalid or revoked API key")
    if not token.startswith(_PREFIX):
        raise failure
    key_id, _, secret = token[len(_PREFIX):].partition("_")
    if not key_id or not secret:
        raise failure
    with Session(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            raise failure
        if not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise failure
        now = utcnow()
        last = row.last_used_at
        if last is None or now - as_utc(last) > _LAST_USED_RESOLUTION:
            row.last_used_at = now
            session.add(row)
            session.commit()
        return _public(row)



def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, newest first, without secrets."""
    with Session(engine) as session:
        rows = session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at).desc()))
        return [_public(r) for r in rows]


def revoke_key(engine: Engine, *, key_id: str) -> ApiKey:
    """Revoke a key; later requests with it get 401."""
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
        return _public(row)
