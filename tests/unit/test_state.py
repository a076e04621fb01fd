"""Principals directory, API keys and settings validation on real SQLite."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contextd.core.errors import AuthenticationFailed, InvalidInput
from contextd.core.settings import Settings
from contextd.state.db import make_engine, migrate
from contextd.state.keys import authenticate, create_key, list_keys, revoke_key
from contextd.state.principals import effective_principals, set_user_groups
from contextd.state.tables import ApiKeyRow, GroupMember


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


def test_effective_principals_resolve_nested_groups(engine) -> None:  # type: ignore[no-untyped-def]
    from contextd.state.db import session_scope

    set_user_groups(engine, user_id="ann", groups=["emea-sales"])
    with session_scope(engine) as session:
        session.add(GroupMember(group_id="sales", member="group:emea-sales"))
        session.add(GroupMember(group_id="everyone", member="group:sales"))
        session.add(GroupMember(group_id="emea-sales", member="group:everyone"))  # a cycle
    assert effective_principals(engine, user_id="ann") == {
        "public", "user:ann", "group:emea-sales", "group:sales", "group:everyone"}
    assert effective_principals(engine, user_id="ghost") == {"public", "user:ghost"}


def test_group_names_are_validated(engine) -> None:  # type: ignore[no-untyped-def]
    for bad in ("", "a b", "group:x", "x" * 201):
        with pytest.raises(InvalidInput):
            set_user_groups(engine, user_id="ann", groups=[bad])


def test_keys_are_hashed_and_revocable(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    key, secret = create_key(engine, name="bot", role="agent")
    assert authenticate(engine, secret).id == key.id
    with Session(engine) as session:
        row = session.exec(select(ApiKeyRow)).one()
        assert secret.split("_", 2)[2] not in row.secret_hash
    assert authenticate(engine, secret).last_used_at is not None
    revoke_key(engine, key_id=key.id)
    with pytest.raises(AuthenticationFailed):
        authenticate(engine, secret)
    assert list_keys(engine)[0].revoked_at is not None
    with pytest.raises(InvalidInput):
        create_key(engine, name="x", role="root")


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(half_life_days={"tweets": 3.0})
    with pytest.raises(ValidationError):
        Settings(chunk_size=100, chunk_overlap=100)
    monkeypatch.setenv("CONTEXTD_PORT", "9999")
    monkeypatch.setenv("CONTEXTD_DATA_DIR", "/tmp/ctx")
    settings = Settings()
    assert settings.port == 9999
    assert settings.sql_url == "sqlite:////tmp/ctx/contextd.db"
    assert Settings(half_life_days={"email": 7}).half_life_days["document"] == 180.0
