"""``/v1/principals`` and ``/v1/groups``: the directory that ACL checks read.

Every change is audited and takes effect on the next request (nothing is cached).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from contextd.api.deps import AdminKey, ReaderKey, RuntimeDep
from contextd.api.schemas import (
    GroupEntryOut,
    GroupParentsIn,
    GroupParentsOut,
    GroupsImportIn,
    GroupsImportOut,
    GroupsPageOut,
    PrincipalIn,
    PrincipalOut,
    PrincipalsPageOut,
    UserEntryOut,
)
from contextd.connectors.groups import parse_memberships
from contextd.core.errors import NotFound
from contextd.state import audit
from contextd.state.directory_pages import list_groups, list_users
from contextd.state.keys import ApiKey
from contextd.state.principals import (
    effective_principals,
    get_user_groups,
    replace_memberships,
    set_group_parents,
    set_user_groups,
)

router = APIRouter(prefix="/v1", tags=["principals"])
Ident = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s:]+$")]
After = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="The last id of the previous page.")]
PageSize = Annotated[int, Query(ge=1, le=1000)]


def _out(runtime: RuntimeDep, user_id: str, groups: list[str]) -> PrincipalOut:
    principals = effective_principals(runtime.engine, user_id=user_id)
    return PrincipalOut(user_id=user_id, groups=groups, principals=sorted(principals))


def _audit(runtime: RuntimeDep, actor: ApiKey, action: str, target: str, **details: object
           ) -> None:
    audit.record(runtime.engine, action=action, actor_key_id=actor.id, actor=actor.name,
                 target=target, details=details)


@router.put("/principals/{user_id}", response_model=PrincipalOut,
            responses={401: {}, 403: {}, 422: {}, 429: {}})
def put_principal(user_id: Ident, body: PrincipalIn, runtime: RuntimeDep,
                  admin: AdminKey) -> PrincipalOut:
    """Set the user's direct groups (replaces them); takes effect on the next request."""
    groups = set_user_groups(runtime.engine, user_id=user_id, groups=body.groups)
    _audit(runtime, admin, "principal.set", f"user:{user_id}", groups=groups)
    return _out(runtime, user_id, groups)


@router.get("/principals", response_model=PrincipalsPageOut,
            responses={401: {}, 403: {}, 422: {}, 429: {}})
def get_principals(runtime: RuntimeDep, _: ReaderKey, after: After = None,
                   limit: PageSize = 100) -> PrincipalsPageOut:
    """Known users with their direct groups, ordered by id; page with ``after``."""
    users = list_users(runtime.engine, after=after, limit=limit)
    return PrincipalsPageOut(
        principals=[UserEntryOut(user_id=u.user_id, groups=u.groups) for u in users],
        next_after=users[-1].user_id if len(users) == limit else None)


@router.get("/groups", response_model=GroupsPageOut,
            responses={401: {}, 403: {}, 422: {}, 429: {}})
def get_groups(runtime: RuntimeDep, _: ReaderKey, after: After = None,
               limit: PageSize = 100) -> GroupsPageOut:
    """Groups with their direct members and parents, ordered by id; page with ``after``."""
    groups = list_groups(runtime.engine, after=after, limit=limit)
    return GroupsPageOut(
        groups=[GroupEntryOut(group_id=g.group_id, members=g.members, parents=g.parents)
                for g in groups],
        next_after=groups[-1].group_id if len(groups) == limit else None)


@router.get("/principals/{user_id}", response_model=PrincipalOut,
            responses={401: {}, 403: {}, 404: {}, 422: {}, 429: {}})
def get_principal(user_id: Ident, runtime: RuntimeDep, _: ReaderKey) -> PrincipalOut:
    """The user's direct groups and effective principals."""
    groups = get_user_groups(runtime.engine, user_id=user_id)
    if groups is None:
        raise NotFound(f"user {user_id!r} not found")
    return _out(runtime, user_id, groups)


@router.put("/groups/{group_id}", response_model=GroupParentsOut,
            responses={401: {}, 403: {}, 422: {}, 429: {}})
def put_group(group_id: Ident, body: GroupParentsIn, runtime: RuntimeDep,
              admin: AdminKey) -> GroupParentsOut:
    """Set the groups this group belongs to (nesting); members inherit them."""
    parents = set_group_parents(runtime.engine, group_id=group_id, parents=body.parents)
    _audit(runtime, admin, "group.set", f"group:{group_id}", parents=parents)
    return GroupParentsOut(group_id=group_id, parents=parents)


@router.post("/principals/import", response_model=GroupsImportOut,
             responses={401: {}, 403: {}, 413: {}, 422: {}, 429: {}})
def post_import(body: GroupsImportIn, runtime: RuntimeDep, admin: AdminKey) -> GroupsImportOut:
    """Replace every membership ``origin`` set before with those of a CSV/LDIF export."""
    found = parse_memberships(body.format, body.content.encode())
    added, removed = replace_memberships(runtime.engine, origin=body.origin,
                                         memberships=[(m.group, m.member) for m in found])
    _audit(runtime, admin, "principal.import", f"origin:{body.origin}", format=body.format,
           memberships=len(found), added=added, removed=removed)
    return GroupsImportOut(origin=body.origin, memberships=len(found), added=added,
                           removed=removed)
