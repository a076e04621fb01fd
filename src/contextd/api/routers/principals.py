"""``/v1/principals`` and ``/v1/groups``: the directory that ACL checks read.

Every change is audited and takes effect on the next request (nothing is cached).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from contextd.api.deps import AdminKey, ReaderKey, RuntimeDep
from contextd.api.schemas import (
    GroupParentsIn,
    GroupParentsOut,
    GroupsImportIn,
    GroupsImportOut,
    PrincipalIn,
    PrincipalOut,
)
from contextd.connectors.groups import parse_memberships
from contextd.core.errors import NotFound
from contextd.state import audit
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
