"""API keys: random secrets shown once, stored as SHA-256, checked in constant time.

A key reads ``ctxd_<id>_<secret>``: the id finds the row, the secret is compared by
hash. Secrets carry 256 bits of randomness, so a fast hash is enough (no password
stretching needed), and it keeps authentication off the latency budget.

Each key has a policy: its binding (the users it may act for: a list of user ids and/or
the members of a group), its scope (sources and kinds), its rate and output limits.
Rotation issues a new secret and keeps the old one valid for a grace period, so agents
can switch over without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, delete, select

from contextd.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from contextd.core.types import KINDS, as_utc, utcnow
from contextd.state.db import session_scope
from contextd.state.lastgood import LastKnownGood
from contextd.state.tables import ApiKeyPolicy, ApiKeyRow, RetiredKeySecret

ROLES = ("admin", "agent", "analyst")
_USER_ID = re.compile(r"^[^\s:]{1,200}$")
_PREFIX = "ctxd_"
_LAST_USED_RESOLUTION = timedelta(seconds=60)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """A key's binding, scope and limits; None means "not narrowed" / "the service default".

    ``user_ids`` and ``group`` bind the key to users: it may act for (and read the memory
    of) those users and the members of that group only. Both None: an unbound key.
    """

    sources: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    user_ids: frozenset[str] | None = None
    group: str | None = None
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
        if self.user_ids is not None and (not self.user_ids or any(
                not _USER_ID.match(u) for u in self.user_ids)):
            raise InvalidInput("user_ids must be a non-empty list of user ids (1-200 "
                               "characters, no spaces or ':')", details=[{"field": "user_ids"}])
        if self.group is not None and not _USER_ID.match(self.group):
            raise InvalidInput("group must be a group id (1-200 characters, no spaces or ':')",
                               details=[{"field": "group"}])
        for name in _LIMITS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInput(f"{name} must be >= 1", details=[{"field": name}])
        return self

    @property
    def bound(self) -> bool:
        """True when the key may act only for some users."""
        return self.user_ids is not None or self.group is not None

    @property
    def implied_user(self) -> str | None:
        """The one user a key bound to exactly one user (and no group) acts for."""
        if self.group is None and self.user_ids is not None and len(self.user_ids) == 1:
            return next(iter(self.user_ids))
        return None

    @classmethod
    def of(cls, fields: object | None) -> KeyPolicy:
        """From anything holding the policy's fields with lists for sets (a stored row, a
        request body); None is the empty policy."""
        if fields is None:
            return cls()
        values = {name: getattr(fields, name) for name in (*_LIMITS, "group")}
        for name in _SETS:
            listed = getattr(fields, name)
            values[name] = None if listed is None else frozenset(listed)
        return cls(**values)

    def as_lists(self) -> dict[str, Any]:
        """The fields with sets as sorted lists: the stored and the API form."""
        values: dict[str, Any] = {name: getattr(self, name) for name in (*_LIMITS, "group")}
        for name in _SETS:
            members = getattr(self, name)
            values[name] = None if members is None else sorted(members)
        return values


_SETS = ("sources", "kinds", "user_ids")
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


def _public(row: Any, policy: object | None = None) -> ApiKey:
    """The service's view of a key row (ORM object or plain row) and its policy fields."""
    def utc(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return ApiKey(row.id, row.name, row.role, as_utc(row.created_at), utc(row.last_used_at),
                  utc(row.revoked_at), KeyPolicy.of(policy))


def _new_secret(key_id: str) -> tuple[str, str]:
    """(full key string, hash of its secret part)."""
    secret = secrets.token_urlsafe(32)
    return f"{_PREFIX}{key_id}_{secret}", _hash(secret)


def _check_binding(role: str, policy: KeyPolicy, require_bound_agents: bool) -> None:
    if require_bound_agents and role == "agent" and not policy.bound:
        raise InvalidInput("agent keys must be bound to users (policy.user_ids or "
                           "policy.group): this service requires bound agent keys",
                           details=[{"field": "policy.user_ids"}])


def create_key(engine: Engine, *, name: str, role: str, policy: KeyPolicy | None = None,
               require_bound_agents: bool = False) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full key string, which is never stored or shown again.

    With ``require_bound_agents``, an agent key without a user binding is refused (422)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {list(ROLES)}",
                           details=[{"field": "role",
                                     "message": f"one of {list(ROLES)}"}])
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters",
                           details=[{"field": "name",
                                     "message": "1-200 characters"}])
    policy = (policy or KeyPolicy()).validated()
    _check_binding(role, policy, require_bound_agents)
    key_id = secrets.token_hex(8)
    token, secret_hash = _new_secret(key_id)
    row = ApiKeyRow(id=key_id, name=name, role=role, secret_hash=secret_hash)
    policy_row = _policy_row(key_id, policy)
    with session_scope(engine) as session:
        taken = session.exec(select(ApiKeyRow.id).where(
            col(ApiKeyRow.name) == name, col(ApiKeyRow.revoked_at).is_(None))).first()
        if taken is not None:
            raise Conflict(f"an active key is already named {name!r} (id {taken}); "
                           "revoke it or choose another name",
                           details=[{"field": "name", "message": "already in use"}])
        session.add(row)
        session.add(policy_row)
    return _public(row, policy_row), token


def set_policy(engine: Engine, *, key_id: str, policy: KeyPolicy,
               require_bound_agents: bool = False) -> ApiKey:
    """Replace a key's binding, scope and limits; the next request of the key is held to
    them."""
    policy = policy.validated()
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        _check_binding(row.role, policy, require_bound_agents)
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
        key = _verified_key(engine, key_id, secret, failure)
    except OperationalError:
        recent = _LAST_GOOD.recall(engine, key_id, outage_grace)
        if recent is None or not hmac.compare_digest(recent[0], _hash(secret)):
            raise
        log.warning("database unreachable; accepting a key verified moments ago",
                    extra={"event": "auth_last_known_good", "key_id": key_id})
        return recent[1]
    _LAST_GOOD.remember(engine, key_id, (_hash(secret), key))  # the current or a retired one
    return key


_KEYS: Any = ApiKeyRow.__table__  # type: ignore[attr-defined]
_POLICIES: Any = ApiKeyPolicy.__table__  # type: ignore[attr-defined]
# Built once: constructing a statement costs several times more than running it, and
# these run on every request. The key and its policy come in one round trip.
_KEY_LOOKUP = (
    sa_select(_KEYS.c.id, _KEYS.c.name, _KEYS.c.role, _KEYS.c.secret_hash, _KEYS.c.created_at,
              _KEYS.c.last_used_at, _KEYS.c.revoked_at,
              _POLICIES.c.key_id.label("policy_key_id"),
              *(_POLICIES.c[name] for name in (*_SETS, *_LIMITS, "group")))
    .outerjoin_from(_KEYS, _POLICIES, _POLICIES.c.key_id == _KEYS.c.id)
    .where(_KEYS.c.id == bindparam("key_id")))
_TOUCH = (sa_update(_KEYS).where(_KEYS.c.id == bindparam("key_id"))
          .values(last_used_at=bindparam("now")))


def _verified_key(engine: Engine, key_id: str, secret: str,
                  failure: AuthenticationFailed) -> ApiKey:
    """The active key ``key_id`` whose current (or retired, within grace) secret is
    ``secret``; else ``failure``. Marks it used at most once per minute."""
    with engine.connect() as connection:
        row = connection.execute(_KEY_LOOKUP, {"key_id": key_id}).first()
        if row is None or row.revoked_at is not None:
            _LAST_GOOD.forget(engine, key_id)
            raise failure
        now = utcnow()
        presented = _hash(secret)
        if not hmac.compare_digest(row.secret_hash, presented):
            with Session(bind=connection) as session:  # the connection already held
                retired = session.get(RetiredKeySecret, presented)
            if (retired is None or retired.key_id != key_id
                    or as_utc(retired.valid_until) <= now):
                raise failure
        key = _public(row, row if row.policy_key_id is not None else None)
        last = row.last_used_at
        if last is None or now - as_utc(last) > _LAST_USED_RESOLUTION:
            connection.execute(_TOUCH, {"key_id": key_id, "now": now})
            connection.commit()
            key = replace(key, last_used_at=now)
        return key


def list_keys(engine: Engine, *, bound: bool | None = None) -> list[ApiKey]:
    """Every key, newest first, without secrets; ``bound`` keeps only keys that are (True)
    or are not (False) bound to users."""
    with Session(engine) as session:
        rows = session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at).desc())).all()
        policies = {p.key_id: p for p in session.exec(select(ApiKeyPolicy))}
        keys = [_public(r, policies.get(r.id)) for r in rows]
    return keys if bound is None else [k for k in keys if k.policy.bound == bound]


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
