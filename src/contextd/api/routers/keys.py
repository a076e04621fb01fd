"""``/v1/keys``: create (shown once), list (never the secret), revoke, rotate, set policy.

Every change is written to the audit log; secrets never are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query

from contextd.api.deps import AdminKey, RuntimeDep
from contextd.api.schemas import (
    KeyCreatedOut,
    KeyCreateIn,
    KeyOut,
    KeyPolicyIn,
    KeyPolicyOut,
    KeyRotatedOut,
)
from contextd.core.errors import InvalidInput
from contextd.retrieval.sources import known_sources
from contextd.state import audit
from contextd.state.keys import (
    ApiKey,
    KeyPolicy,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
    set_policy,
)

router = APIRouter(prefix="/v1/keys", tags=["keys"])
KeyId = Annotated[str, Path(min_length=1, max_length=32)]


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(id=key.id, name=key.name, role=key.role, bound=key.policy.bound,
                  created_at=key.created_at,
                  last_used_at=key.last_used_at, revoked_at=key.revoked_at,
                  policy=KeyPolicyOut(**key.policy.as_lists()))


def checked_policy(runtime: RuntimeDep, policy: KeyPolicy, field: str) -> KeyPolicy:
    """``policy`` if every source it names exists (a connector, or live documents); a
    typo would otherwise scope a key to nothing and fail only at request time."""
    unknown = sorted((policy.sources or set()) - known_sources(runtime.engine))
    if unknown:
        raise InvalidInput(f"unknown sources in the key policy: {unknown}",
                           details=[{"field": field, "message": f"unknown sources {unknown}",
                                     "unknown": unknown}])
    return policy


def _audit(runtime: RuntimeDep, actor: ApiKey, action: str, key: ApiKey, **details: object
           ) -> None:
    audit.record(runtime.engine, action=action, actor_key_id=actor.id, actor=actor.name,
                 target=f"key:{key.id}", details={"name": key.name, "role": key.role,
                                                  **details})


@router.post("", response_model=KeyCreatedOut, status_code=201,
             responses={401: {}, 403: {}, 409: {}, 422: {}, 429: {}})
def post_key(body: KeyCreateIn, runtime: RuntimeDep, admin: AdminKey) -> KeyCreatedOut:
    """Create a key; the response holds the full key, which is never shown again. Names
    are unique among active keys (409); policy sources must exist (422)."""
    policy = checked_policy(runtime, KeyPolicy.of(body.policy), "policy.sources")
    key, secret = create_key(runtime.engine, name=body.name, role=body.role, policy=policy,
                             require_bound_agents=runtime.settings.require_bound_agent_keys)
    _audit(runtime, admin, "key.create", key,
           policy=KeyPolicyOut(**key.policy.as_lists()).model_dump(exclude_none=True))
    return KeyCreatedOut(**key_out(key).model_dump(), key=secret)


@router.get("", response_model=list[KeyOut], responses={401: {}, 403: {}, 429: {}})
def get_keys(runtime: RuntimeDep, _: AdminKey,
             bound: Annotated[bool | None, Query(description=(
                 "true: only keys bound to users; false: only unbound keys"))] = None,
             ) -> list[KeyOut]:
    """Every key with its created/last-used/revoked times and policy, never a secret."""
    return [key_out(k) for k in list_keys(runtime.engine, bound=bound)]


@router.delete("/{key_id}", response_model=KeyOut,
               responses={401: {}, 403: {}, 404: {}, 422: {}, 429: {}})
def delete_key(key_id: KeyId, runtime: RuntimeDep, admin: AdminKey) -> KeyOut:
    """Revoke a key (and any rotated-out secret of it); its next request gets 401."""
    key = revoke_key(runtime.engine, key_id=key_id)
    _audit(runtime, admin, "key.revoke", key)
    return key_out(key)


@router.post("/{key_id}/rotate", response_model=KeyRotatedOut,
             responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 429: {}})
def post_rotate(key_id: KeyId, runtime: RuntimeDep, admin: AdminKey) -> KeyRotatedOut:
    """A new secret for the key; the old one keeps working for the configured grace period."""
    grace = timedelta(seconds=runtime.settings.key_rotation_grace_seconds)
    key, secret, valid_until = rotate_key(runtime.engine, key_id=key_id, grace=grace)
    _audit(runtime, admin, "key.rotate", key, previous_valid_until=valid_until.isoformat())
    return KeyRotatedOut(**key_out(key).model_dump(), key=secret,
                         previous_valid_until=valid_until)


@router.put("/{key_id}/policy", response_model=KeyOut,
            responses={401: {}, 403: {}, 404: {}, 422: {}, 429: {}})
def put_policy(key_id: KeyId, body: KeyPolicyIn, runtime: RuntimeDep,
               admin: AdminKey) -> KeyOut:
    """Replace the key's binding, scope and limits; its next request is held to them."""
    key = set_policy(runtime.engine, key_id=key_id,
                     policy=checked_policy(runtime, KeyPolicy.of(body), "sources"),
                     require_bound_agents=runtime.settings.require_bound_agent_keys)
    _audit(runtime, admin, "key.policy", key,
           policy=KeyPolicyOut(**key.policy.as_lists()).model_dump(exclude_none=True))
    return key_out(key)
