"""``/v1/keys``: create (shown once), list (never the secret), revoke."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path

from contextd.api.deps import AdminKey, RuntimeDep
from contextd.api.schemas import KeyCreatedOut, KeyCreateIn, KeyOut
from contextd.memory.keys import create_key, list_keys, revoke_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", response_model=KeyCreatedOut, status_code=201,
             responses={401: {}, 403: {}, 422: {}})
def post_key(body: KeyCreateIn, runtime: RuntimeDep, _: AdminKey) -> KeyCreatedOut:
    key, secret = create_key(runtime.engine, name=body.name, role=body.role)
    return KeyCreatedOut(**asdict(key), key=secret)


@router.get("", response_model=list[KeyOut], responses={401: {}, 403: {}})
def get_keys(runtime: RuntimeDep, _: AdminKey) -> list[KeyOut]:
    return [KeyOut(**asdict(k)) for k in list_keys(runtime.engine)]


@router.delete("/{key_id}", response_model=KeyOut, responses={401: {}, 403: {}, 404: {}})
def delete_key(key_id: Annotated[str, Path(min_length=1, max_length=32)], runtime: RuntimeDep,
               _: AdminKey) -> KeyOut:
    return KeyOut(**asdict(revoke_key(runtime.engine, key_id=key_id)))
