"""API keys: random secrets shown once, stored as SHA-256, checked in constant time.

A key reads ``ctxd_<id>_<secret>``: the id finds the row, the secret is compared by
hash. Secrets carry 256 bits of randomness, so a fast hash is enough (no password
stretching needed), and it keeps authentication off the latency budget.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from contextd.core.errors import AuthenticationFailed, InvalidInput, NotFound
from contextd.core.types import as_utc, utcnow
from contextd.memory.db import session_scope
from contextd.memory.lastgood import LastKnownGood
from contextd.memory.tables import ApiKeyRow

ROLES = ("admin", "agent", "analyst")
_PREFIX = "ctxd_"
_LAST_USED_RESOLUTION = timedelta(seconds=60)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the rest of the service sees it (never with its secret)."""

    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


# key id -> (secret hash, key) of the last successful check, for database outages only.
_LAST_GOOD: LastKnownGood[str, tuple[str, ApiKey]] = LastKnownGood()


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


def authenticate(engine: Engine, token: str, *, outage_grace: float = 0.0) -> ApiKey:
    """The active key for ``token``, or AuthenticationFailed (same message for every cause).

    If the database is unreachable, a key verified at most ``outage_grace`` seconds ago is
    still accepted (see ``memory.lastgood``); any other key gets the database error.
    """
    failure = AuthenticationFailed("invalid or revoked API key")
    if not token.startswith(_PREFIX):
        raise failure
    key_id, _, secret = token[len(_PREFIX):].partition("_")
    if not key_id or not secret:
        raise failure
    try:
        row = _verified_row(engine, key_id, secret, failure)
    except OperationalError:
        recent = _LAST_GOOD.recall(engine, key_id, outage_grace)
        if recent is None or not hmac.compare_digest(recent[0], _hash(secret)):
            raise
        log.warning("database unreachable; accepting a key verified moments ago",
                    extra={"event": "auth_last_known_good", "key_id": key_id})
        return recent[1]
    key = _public(row)
    _LAST_GOOD.remember(engine, key_id, (row.secret_hash, key))
    return key


def _verified_row(engine: Engine, key_id: str, secret: str,
                  failure: AuthenticationFailed) -> ApiKeyRow:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            _LAST_GOOD.forget(engine, key_id)
            raise failure
        if not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise failure
        now = utcnow()
        last = row.last_used_at
        if last is None or now - as_utc(last) > _LAST_USED_RESOLUTION:
            row.last_used_at = now
            session.add(row)
            session.commit()
        return row


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
        _LAST_GOOD.forget(engine, key_id)
        return _public(row)
