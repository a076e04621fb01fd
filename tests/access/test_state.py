"""Key policies and rotation, the audit log and directory imports on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from contextd.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from contextd.core.types import utcnow
from contextd.state import audit
from contextd.state.keys import (
    KeyPolicy,
    authenticate,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
    set_policy,
)
from contextd.state.principals import (
    effective_principals,
    get_user_groups,
    replace_memberships,
    set_group_parents,
    set_user_groups,
)


def test_policy_is_stored_and_returned_on_authentication(sql_engine: Engine) -> None:
    policy = KeyPolicy(sources=frozenset({"hr"}), kinds=frozenset({"document"}),
                       rate_per_minute=30, burst=3, max_token_budget=500, max_top_k=5,
                       max_request_bytes=2048)
    key, secret = create_key(sql_engine, name="hr-bot", role="agent", policy=policy)
    assert key.policy == policy
    assert authenticate(sql_engine, secret).policy == policy
    [listed] = list_keys(sql_engine)
    assert listed.policy == policy and listed.last_used_at is not None
    assert listed.created_at <= utcnow()
    changed = set_policy(sql_engine, key_id=key.id, policy=KeyPolicy(kinds=frozenset({"crm"})))
    assert authenticate(sql_engine, secret).policy == changed.policy
    assert changed.policy.sources is None


@pytest.mark.parametrize(("policy", "field"), [
    (KeyPolicy(kinds=frozenset({"video"})), "kinds"),
    (KeyPolicy(sources=frozenset({""})), "sources"),
    (KeyPolicy(max_top_k=0), "max_top_k"),
    (KeyPolicy(rate_per_minute=-1), "rate_per_minute"),
])
def test_bad_policy_names_the_field_and_saves_nothing(sql_engine: Engine, policy: KeyPolicy,
                                                      field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        create_key(sql_engine, name="x", role="agent", policy=policy)
    [detail] = err.value.details
    assert detail["field"] == field and detail["message"]
    assert list_keys(sql_engine) == []


def test_rotation_keeps_the_old_secret_for_the_grace_period(sql_engine: Engine) -> None:
    key, old = create_key(sql_engine, name="bot", role="agent")
    _, new, until = rotate_key(sql_engine, key_id=key.id, grace=timedelta(seconds=1.5))
    assert new != old and until > utcnow()
    assert authenticate(sql_engine, old).id == key.id  # still valid in the grace period
    assert authenticate(sql_engine, new).id == key.id
    time.sleep(1.6)
    with pytest.raises(AuthenticationFailed):
        authenticate(sql_engine, old)
    assert authenticate(sql_engine, new).id == key.id


def test_rotation_without_grace_and_revocation_end_every_secret(sql_engine: Engine) -> None:
    key, old = create_key(sql_engine, name="bot", role="agent")
    _, new, _ = rotate_key(sql_engine, key_id=key.id, grace=timedelta(0))
    with pytest.raises(AuthenticationFailed):
        authenticate(sql_engine, old)
    _, newer, _ = rotate_key(sql_engine, key_id=key.id, grace=timedelta(hours=1))
    revoke_key(sql_engine, key_id=key.id)
    for secret in (new, newer):
        with pytest.raises(AuthenticationFailed):
            authenticate(sql_engine, secret)
    with pytest.raises(Conflict):
        rotate_key(sql_engine, key_id=key.id, grace=timedelta(0))
    with pytest.raises(NotFound):
        rotate_key(sql_engine, key_id="missing", grace=timedelta(0))


def test_a_retired_secret_of_one_key_never_opens_another(sql_engine: Engine) -> None:
    a, a_old = create_key(sql_engine, name="a", role="agent")
    b, _ = create_key(sql_engine, name="b", role="admin")
    rotate_key(sql_engine, key_id=a.id, grace=timedelta(hours=1))
    forged = a_old.replace(a.id, b.id)
    with pytest.raises(AuthenticationFailed):
        authenticate(sql_engine, forged)


def test_audit_filters_and_pages(sql_engine: Engine) -> None:
    for i in range(7):
        audit.record(sql_engine, action="context.request", actor_key_id="k1", actor="bot",
                     user_id=f"u{i % 2}", item_ids=[f"c{i}"], latency_ms=1.0 + i)
    audit.record(sql_engine, action="key.create", actor_key_id="k0", actor="root",
                 target="key:k1")
    rows, cursor = audit.query(sql_engine, audit.AuditFilter(actor="bot"), limit=3)
    assert [r.item_ids for r in rows] == [["c6"], ["c5"], ["c4"]]
    seen = [r.id for r in rows]
    while cursor is not None:
        rows, cursor = audit.query(sql_engine, audit.AuditFilter(actor="k1"), limit=3,
                                   before_id=cursor)
        seen += [r.id for r in rows]
    assert len(seen) == 7 == len(set(seen))
    assert [r.action for r in audit.query(sql_engine, audit.AuditFilter(action="key."))[0]] \
        == ["key.create"]
    u1 = audit.query(sql_engine, audit.AuditFilter(user_id="u1"))[0]
    assert len(u1) == 3 and {r.user_id for r in u1} == {"u1"}
    now = utcnow()
    assert audit.query(sql_engine, audit.AuditFilter(since=now + timedelta(seconds=5)))[0] == []
    assert len(audit.query(sql_engine, audit.AuditFilter(until=now + timedelta(seconds=5)))[0]) \
        == 8


def test_import_replaces_only_its_own_memberships(sql_engine: Engine) -> None:
    set_user_groups(sql_engine, user_id="ana", groups=["staff"])  # set through the API
    added, removed = replace_memberships(sql_engine, origin="ldap", memberships=[
        ("sales", "user:ana"), ("emea", "group:sales"), ("staff", "user:ana")])
    assert (added, removed) == (2, 0)  # ("staff", "user:ana") already existed
    assert effective_principals(sql_engine, user_id="ana") == {
        "public", "user:ana", "group:staff", "group:sales", "group:emea"}
    added, removed = replace_memberships(sql_engine, origin="ldap",
                                         memberships=[("emea", "group:sales")])
    assert (added, removed) == (0, 1)
    assert effective_principals(sql_engine, user_id="ana") == {
        "public", "user:ana", "group:staff"}
    replace_memberships(sql_engine, origin="ldap", memberships=[("ops", "user:new")])
    assert get_user_groups(sql_engine, user_id="new") == ["ops"]
    with pytest.raises(InvalidInput):
        replace_memberships(sql_engine, origin="ldap", memberships=[("ops", "robot:x")])
    assert get_user_groups(sql_engine, user_id="new") == ["ops"]  # nothing half written


def test_nested_groups_through_the_api_functions(sql_engine: Engine) -> None:
    set_user_groups(sql_engine, user_id="li", groups=["emea-sales"])
    set_group_parents(sql_engine, group_id="emea-sales", parents=["sales"])
    set_group_parents(sql_engine, group_id="sales", parents=["revenue"])
    assert "group:revenue" in effective_principals(sql_engine, user_id="li")
    set_group_parents(sql_engine, group_id="emea-sales", parents=[])
    assert effective_principals(sql_engine, user_id="li") == {
        "public", "user:li", "group:emea-sales"}
    with pytest.raises(InvalidInput):
        set_group_parents(sql_engine, group_id="x", parents=["x"])


def test_the_database_refuses_to_rewrite_the_audit_log(sql_engine: Engine) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    audit.record(sql_engine, action="key.create", actor="root")
    for statement in ("UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), sql_engine.begin() as conn:
            conn.execute(text(statement))
    [row] = audit.query(sql_engine, audit.AuditFilter())[0]
    assert row.outcome == "ok"
