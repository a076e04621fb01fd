"""``PUT/GET /v1/principals/{user_id}``: the directory that ACL checks read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from contextd.api.deps import AdminKey, ReaderKey, RuntimeDep
from contextd.api.schemas import PrincipalIn, PrincipalOut
from contextd.core.errors import NotFound
from contextd.memory.principals import effective_principals, get_user_groups, set_user_groups

router = APIRouter(prefix="/v1/principals", tags=["principals"])
UserId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s:]+$")]


def _out(runtime: RuntimeDep, user_id: str, groups: list[str]) -> PrincipalOut:
    principals = effective_principals(runtime.engine, user_id=user_id)
    return PrincipalOut(user_id=user_id, groups=groups, principals=sorted(principals))


@router.put("/{user_id}", response_model=PrincipalOut, responses={401: {}, 403: {}, 422: {}})
def put_principal(user_id: UserId, body: PrincipalIn, runtime: RuntimeDep,
                  _: AdminKey) -> PrincipalOut:
    """Set the user's direct groups (replaces them); takes effect on the next request."""
    groups = set_user_groups(runtime.engine, user_id=user_id, groups=body.groups)
    return _out(runtime, user_id, groups)


@router.get("/{user_id}", response_model=PrincipalOut,
            responses={401: {}, 403: {}, 404: {}, 422: {}})
def get_principal(user_id: UserId, runtime: RuntimeDep, _: ReaderKey) -> PrincipalOut:
    """The user's direct groups and effective principals."""
    groups = get_user_groups(runtime.engine, user_id=user_id)
    if groups is None:
        raise NotFound(f"user {user_id!r} not found")
    return _out(runtime, user_id, groups)
