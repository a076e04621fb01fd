"""The principals directory: users, their groups, and effective principals for ACL checks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, literal
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, delete, select

from contextd.core.errors import InvalidInput
from contextd.core.types import PUBLIC, utcnow
from contextd.state.db import session_scope
from contextd.state.lastgood import LastKnownGood
from contextd.state.tables import GroupMember, UserRow

MAX_GROUP_DEPTH = 16
log = logging.getLogger(__name__)
_LAST_GOOD: LastKnownGood[str, frozenset[str]] = LastKnownGood()


def _check_ident(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or ":" in value or any(c.isspace() for c in value):
        raise InvalidInput(f"invalid {what} {value!r}: 1-200 characters, no ':' or spaces",
                           details=[{"field": what,
                                     "message": "1-200 characters, no ':' or spaces"}])
    return value


def set_user_groups(engine: Engine, *, user_id: str, groups: Iterable[str],
                    origin: str = "api") -> list[str]:
    """Replace the direct groups of ``user_id`` (creating the user); returns them sorted."""
    user_id = _check_ident(user_id, "user_id")
    wanted = sorted({_check_ident(g, "group") for g in groups})
    member = f"user:{user_id}"
    with session_scope(engine) as session:
        user = session.get(UserRow, user_id)
        if user is None:
            session.add(UserRow(user_id=user_id))
        else:
            user.updated_at = utcnow()
            session.add(user)
        session.exec(delete(GroupMember).where(col(GroupMember.member) == member))
        for group in wanted:
            session.add(GroupMember(group_id=group, member=member, origin=origin))
    return wanted


def set_group_parents(engine: Engine, *, group_id: str, parents: Iterable[str],
                      origin: str = "api") -> list[str]:
    """Replace the groups that group ``group_id`` is a member of (nested groups)."""
    group_id = _check_ident(group_id, "group_id")
    wanted = sorted({_check_ident(g, "group") for g in parents})
    if group_id in wanted:
        raise InvalidInput("a group cannot contain itself",
                           details=[{"field": "parents",
                                     "message": "contains the group itself"}])
    member = f"group:{group_id}"
    with session_scope(engine) as session:
        session.exec(delete(GroupMember).where(col(GroupMember.member) == member))
        for parent in wanted:
            session.add(GroupMember(group_id=parent, member=member, origin=origin))
    return wanted


def get_user_groups(engine: Engine, *, user_id: str) -> list[str] | None:
    """Direct groups of a user, or None if the user is unknown."""
    with Session(engine) as session:
        if session.get(UserRow, user_id) is None:
            return None
        rows = session.exec(select(GroupMember.group_id).where(
            GroupMember.member == f"user:{user_id}"))
        return sorted(rows)


def effective_principals(engine: Engine, *, user_id: str,
                         outage_grace: float = 0.0) -> frozenset[str]:
    """``public`` + ``user:<id>`` + every group reached through (nested) memberships.

    Read on every request, so a removal takes effect on the next request. An unknown user
    gets ``public`` and ``user:<id>`` only. If the database is unreachable, the answer read
    at most ``outage_grace`` seconds ago is used (see ``memory.lastgood``); without one the
    error propagates (fail closed).
    """
    try:
        principals = _resolve(engine, user_id)
    except OperationalError:
        recent = _LAST_GOOD.recall(engine, user_id, outage_grace)
        if recent is None:
            raise
        log.warning("directory unreachable; using principals read moments ago",
                    extra={"event": "directory_last_known_good", "user_id": user_id})
        return recent
    _LAST_GOOD.remember(engine, user_id, principals)
    return principals


def _reachable_groups() -> Any:
    """Every group reachable from ``:member`` within ``MAX_GROUP_DEPTH`` hops, as one
    recursive query: one round trip however deep the nesting. UNION drops repeated
    (group, depth) rows and the depth bound ends cycles. Built once, run per request."""
    edges = GroupMember.__table__.c  # type: ignore[attr-defined]
    reach = (sa_select(edges.group_id, literal(1).label("depth"))
             .where(edges.member == bindparam("member"))
             .cte("reach", recursive=True))
    reach = reach.union(
        sa_select(edges.group_id, (reach.c.depth + 1).label("depth"))
        .join(reach, edges.member == literal("group:") + reach.c.group_id)
        .where(reach.c.depth < MAX_GROUP_DEPTH))
    return sa_select(reach.c.group_id).distinct()


_REACHABLE_GROUPS = _reachable_groups()


def _resolve(engine: Engine, user_id: str) -> frozenset[str]:
    with engine.connect() as connection:
        groups = connection.execute(_REACHABLE_GROUPS, {"member": f"user:{user_id}"}).scalars()
        return frozenset({PUBLIC, f"user:{user_id}", *(f"group:{g}" for g in groups)})


def replace_memberships(engine: Engine, *, origin: str,
                        memberships: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """Make the edges set by ``origin`` exactly ``memberships`` ((group, member) pairs).

    One transaction: readers see the old set or the new one, never a mix. Edges another
    origin set (the API, another source) are left alone. Returns (added, removed).
    """
    wanted: set[tuple[str, str]] = set()
    for group, member in memberships:
        prefix, _, ident = member.partition(":")
        if prefix not in ("user", "group"):
            raise InvalidInput(f"invalid member {member!r}",
                               details=[{"field": "member",
                                         "message": "expected user:<id> or group:<id>"}])
        wanted.add((_check_ident(group, "group"), f"{prefix}:{_check_ident(ident, prefix)}"))
    with session_scope(engine) as session:
        existing = {(m.group_id, m.member): m.origin for m in session.exec(select(GroupMember))}
        stale = [pair for pair, o in existing.items() if o == origin and pair not in wanted]
        for group, member in stale:
            session.exec(delete(GroupMember).where(col(GroupMember.group_id) == group,
                                                   col(GroupMember.member) == member))
        new = sorted(wanted - set(existing))
        for group, member in new:
            session.add(GroupMember(group_id=group, member=member, origin=origin))
        users = {m.partition(":")[2] for _, m in wanted if m.startswith("user:")}
        known = set(session.exec(select(UserRow.user_id).where(
            col(UserRow.user_id).in_(sorted(users))))) if users else set()
        for user_id in sorted(users - known):
            session.add(UserRow(user_id=user_id))
    return len(new), len(stale)
