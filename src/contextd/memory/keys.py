"""API keys: random secrets shown once, stored as SHA-256, checked in constant time.

A key reads ``ctxd_<id>_<secret>``: the id finds the row, the secret is compared by
hash. Secrets carry 256 bits of randomness, so a fast hash is enough (no password
stretching needed), and it keeps authentication off the latency budget.

Each key has a policy (its scope: sources and kinds; its rate and output limits).
Rotation issues a new secret and keeps the old one valid for a grace period, so agents
can switch over without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, delete, select

from contextd.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from contextd.core.types import KINDS, as_utc, utcnow
from contextd.memory.db import session_scope
from contextd.memory.lastgood import LastKnownGood
from contextd.memory.tables import ApiKeyPolicy, ApiKeyRow, RetiredKeySecret

ROLES = ("admin", "agent", "analyst")
_PREFIX = "ctxd_"
_LAST_USED_RESOLUTION = timedelta(seconds=60)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """A key's scope and limits; None means "not narrowed" / "the service default"."""

    sources: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    rate_per_minute: int | None = None
    burst: int | None = None
    max_token_budget: int | None = None
    max_top_k: int | None = None
    max_request_bytes: int | None = None

    def validated(self) -> KeyPolicy:
        """Self, or InvalidInput naming the offending field."""
        if self.sources is not None and any(not s or len(s) > 200 for s in self.sources):
            raise InvalidInput("sources must be names of 1-200 characters",
                               details=[{"field": "sources"}])
        if self.kinds is not None and not self.kinds <= set(KINDS):
            raise InvalidInput(f"kinds must be among {list(KINDS)}", details=[{"field": "kinds"}])
        for name in _LIMITS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInput(f"{name} must be >= 1", details=[{"field": name}])
        return self

    @classmethod
    def of(cls, fields: object | None) -> KeyPolicy:
        """From anything holding the policy's fields with lists for sets (a stored row, a
        request body); None is the empty policy."""
        if fields is None:
            return cls()
        values = {name: getattr(fields, name) for name in _LIMITS}
        for name in _SETS:
            listed = getattr(fields, name)
            values[name] = None if listed is None else frozenset(listed)
        return cls(**values)

    def as_lists(self) -> dict[str, Any]:
        """The fields with sets as sorted lists: the stored and the API form."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _LIMITS}
        for name in _SETS:
            members = getattr(self, name)
            values[name] = None if members is None else sorted(members)
        return values


_SETS = ("sources", "kinds")
_LIMITS = ("rate_per_minute", "burst", "max_token_budget", "max_top_k", "max_request_bytes")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the rest of the service sees it (never with its secret)."""

    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    policy: KeyPolicy = KeyPolicy()


# key id -> (secret hash, key) of the last successful check, for database outages only.
_LAST_GOOD: LastKnownGood[str, tuple[str, ApiKey]] = LastKnownGood()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _policy_row(key_id: str, policy: KeyPolicy) -> ApiKeyPolicy:
    return ApiKeyPolicy(key_id=key_id, **policy.as_lists())


def _public(row: ApiKeyRow, policy: ApiKeyPolicy | None = None) -> ApiKey:
    def utc(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return ApiKey(row.id, row.name, row.role, as_utc(row.created_at), utc(row.last_used_at),
                  utc(row.revoked_at), KeyPolicy.of(policy))


def _new_secret(key_id: str) -> tuple[str, str]:
    """(full key string, hash of its secret part)."""
    secret = secrets.token_urlsafe(32)
    return f"{_PREFIX}{key_id}_{secret}", _hash(secret)


def create_key(engine: Engine, *, name: str, role: str,
               policy: KeyPolicy | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full key string, which is never stored or shown again."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {list(ROLES)}", details={"field": "role"})
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters", details={"field": "name"})
    policy = (policy or KeyPolicy()).validated()
    key_id = secrets.token_hex(8)
    token, secret_hash = _new_secret(key_id)
    row = ApiKeyRow(id=key_id, name=name, role=role, secret_hash=secret_hash)
    policy_row = _policy_row(key_id, policy)
    with session_scope(engine) as session:
        session.add(row)
        session.add(policy_row)
    return _public(row, policy_row), token


def set_policy(engine: Engine, *, key_id: str, policy: KeyPolicy) -> ApiKey:
    """Replace a key's scope and limits; the next request of the key is held to them."""
    policy = policy.validated()
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        policy_row = session.merge(_policy_row(key_id, policy))
        return _public(row, policy_row)


def rotate_key(engine: Engine, *, key_id: str, grace: timedelta) -> tuple[ApiKey, str, datetime]:
    """Give an active key a new secret; the old one keeps working until the returned time."""
    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        if row.revoked_at is not None:
            raise Conflict(f"API key {key_id!r} is revoked; create a new key instead")
        token, secret_hash = _new_secret(key_id)
        valid_until = now + grace
        session.exec(delete(RetiredKeySecret).where(  # expired ones are of no further use
            col(RetiredKeySecret.key_id) == key_id, col(RetiredKeySecret.valid_until) <= now))
        if grace > timedelta(0):
            session.add(RetiredKeySecret(secret_hash=row.secret_hash, key_id=key_id,
                                         valid_until=valid_until))
        row.secret_hash = secret_hash
        session.add(row)
        return _public(row, session.get(ApiKeyPolicy, key_id)), token, valid_until


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
        row, policy = _verified_row(engine, key_id, secret, failure)
    except OperationalError:
        recent = _LAST_GOOD.recall(engine, key_id, outage_grace)
        if recent is None or not hmac.compare_digest(recent[0], _hash(secret)):
            raise
        log.warning("database unreachable; accepting a key verified moments ago",
                    extra={"event": "auth_last_known_good", "key_id": key_id})
        return recent[1]
    key = _public(row, policy)
    _LAST_GOOD.remember(engine, key_id, (_hash(secret), key))  # the current or a retired one
    return key


def _verified_row(engine: Engine, key_id: str, secret: str, failure: AuthenticationFailed
                  ) -> tuple[ApiKeyRow, ApiKeyPolicy | None]:
    with Session(engine, expire_on_commit=False) as session:
        # One round trip for the key and its policy: this runs on every request.
        found = session.exec(
            select(ApiKeyRow, ApiKeyPolicy)
            .outerjoin(ApiKeyPolicy, col(ApiKeyPolicy.key_id) == col(ApiKeyRow.id))
            .where(col(ApiKeyRow.id) == key_id)).first()
        row, policy = found if found is not None else (None, None)
        if row is None or row.revoked_at is not None:
            _LAST_GOOD.forget(engine, key_id)
            raise failure
        now = utcnow()
        presented = _hash(secret)
        if not hmac.compare_digest(row.secret_hash, presented):
            retired = session.get(RetiredKeySecret, presented)
            if (retired is None or retired.key_id != key_id
                    or as_utc(retired.valid_until) <= now):
                raise failure
        last = row.last_used_at
        if last is None or now - as_utc(last) > _LAST_USED_RESOLUTION:
            row.last_used_at = now
            session.add(row)
            session.commit()
        return row, policy



def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, newest first, without secrets."""
    with Session(engine) as session:
        rows = session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at).desc())).all()
        policies = {p.key_id: p for p in session.exec(select(ApiKeyPolicy))}
        return [_public(r, policies.get(r.id)) for r in rows]


def revoke_key(engine: Engine, *, key_id: str) -> ApiKey:
    """Revoke a key; later requests with it get 401."""
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
        session.exec(delete(RetiredKeySecret).where(col(RetiredKeySecret.key_id) == key_id))
        _LAST_GOOD.forget(engine, key_id)
        return _public(row, session.get(ApiKeyPolicy, key_id))
