"""Pages of the principals directory for admins: users with their groups, groups with their
direct members and parents. Keyset paging by id, so a page is stable while rows change."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.state.tables import GroupMember, UserRow


@dataclass(frozen=True)
class UserEntry:
    user_id: str
    groups: list[str]


@dataclass(frozen=True)
class GroupEntry:
    group_id: str
    members: list[str]  # direct members: user:<id> and group:<id>
    parents: list[str]  # groups this group belongs to


def list_users(engine: Engine, *, after: str | None = None, limit: int = 100
               ) -> list[UserEntry]:
    """Users ordered by id, those after ``after``, at most ``limit``, with direct groups."""
    with Session(engine) as session:
        query = select(UserRow.user_id).order_by(col(UserRow.user_id)).limit(limit)
        if after is not None:
            query = query.where(col(UserRow.user_id) > after)
        ids = list(session.exec(query))
        if not ids:
            return []
        groups: dict[str, list[str]] = {i: [] for i in ids}
        edges = session.exec(select(GroupMember).where(
            col(GroupMember.member).in_([f"user:{i}" for i in ids])))
        for edge in edges:
            groups[edge.member.removeprefix("user:")].append(edge.group_id)
    return [UserEntry(i, sorted(groups[i])) for i in ids]


def list_groups(engine: Engine, *, after: str | None = None, limit: int = 100
                ) -> list[GroupEntry]:
    """Groups (any id that has members or belongs to a group) ordered by id, paged."""
    with Session(engine) as session:
        edges = list(session.exec(select(GroupMember)))
    members: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for edge in edges:
        members.setdefault(edge.group_id, []).append(edge.member)
        if edge.member.startswith("group:"):
            parents.setdefault(edge.member.removeprefix("group:"), []).append(edge.group_id)
    ids = sorted(set(members) | set(parents))
    if after is not None:
        ids = [i for i in ids if i > after]
    return [GroupEntry(i, sorted(members.get(i, [])), sorted(parents.get(i, [])))
            for i in ids[:limit]]
