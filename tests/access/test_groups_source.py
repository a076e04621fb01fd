"""The ``groups`` source kind: CSV and LDIF membership exports into the directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from contextd.connectors.groups import GroupsConfig, GroupsConnector, Membership, parse_memberships
from contextd.core.errors import ConfigError, InvalidInput
from contextd.state.principals import effective_principals
from contextd.sync.directory import sync_directory

LDIF = b"""version: 1

dn: cn=sales,ou=groups,dc=acme,dc=test
objectClass: top
objectClass: groupOfNames
cn: sales
member: uid=ana,ou=people,dc=acme,dc=test
member: cn=emea-sales,ou=groups,dc=acme,dc=test

dn: cn=emea-sales,ou=groups,dc=acme,dc=test
objectClass: groupOfUniqueNames
cn: emea-sales
uniqueMember: uid=li,ou=people,dc=acme,dc=test

dn: cn=finance,ou=groups,dc=acme,dc=test
objectClass: posixGroup
cn: finance
memberUid: bo

dn: uid=ana,ou=people,dc=acme,dc=test
objectClass: inetOrgPerson
uid: ana
cn: Ana Lima
"""


def test_ldif_groups_nested_groups_and_posix_members() -> None:
    assert parse_memberships("ldif", LDIF) == [
        Membership("emea-sales", "user:li"), Membership("finance", "user:bo"),
        Membership("sales", "group:emea-sales"), Membership("sales", "user:ana")]


def test_csv_members_with_and_without_prefix() -> None:
    text = "group,member\nsales,ana\nsales,group:emea-sales\nemea-sales,user:li\n\n"
    assert parse_memberships("csv", text.encode()) == [
        Membership("emea-sales", "user:li"), Membership("sales", "group:emea-sales"),
        Membership("sales", "user:ana")]


@pytest.mark.parametrize(("fmt", "content", "needle"), [
    ("csv", b"team,person\nsales,ana\n", "header"),
    ("csv", b"group,member\nsales,ana\nbad group,ana\n", "line 3"),
    ("csv", b"group,member\nsales,robot:x y\n", "line 2"),
    ("csv", b"group,member\r\nsales,\"ana\r", "CSV"),
    ("csv", b"group,member\r\nsales,ana\r\nops,bad id\r\n", "line 3"),
    ("csv", b"\xff\xfe", "UTF-8"),
    ("ldif", b"dn: cn=x\nobjectClass groupOfNames\n", "LDIF"),
    ("xml", b"<x/>", "format"),
])
def test_bad_exports_are_refused_precisely(fmt: str, content: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_memberships(fmt, content)
    assert needle in err.value.message or needle in str(err.value.details)


def test_directory_sync_applies_additions_and_removals(sql_engine: Engine,
                                                       tmp_path: Path) -> None:
    export = tmp_path / "groups.ldif"
    export.write_bytes(LDIF)
    connector = GroupsConnector("corp-ldap", GroupsConfig(path=export))
    result = sync_directory(connector, sql_engine)
    assert (result.memberships, result.added, result.removed) == (4, 4, 0)
    assert {"group:sales", "group:emea-sales"} <= effective_principals(sql_engine, user_id="li")
    export.write_bytes(LDIF.replace(b"member: cn=emea-sales,ou=groups,dc=acme,dc=test\n", b""))
    result = sync_directory(connector, sql_engine)
    assert (result.added, result.removed) == (0, 1)
    assert effective_principals(sql_engine, user_id="li") == {
        "public", "user:li", "group:emea-sales"}


def test_connector_checks_its_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        GroupsConnector("g", GroupsConfig(path=tmp_path / "missing.csv")).check()
    odd = tmp_path / "groups.txt"
    odd.write_text("group,member\n")
    with pytest.raises(ConfigError) as err:
        GroupsConnector("g", GroupsConfig(path=odd)).check()
    assert err.value.details == [{"field": "config.format", "message": "required"}]


def test_cli_imports_an_export_and_reports_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from contextd.cli import main
    from contextd.core.settings import get_settings
    from contextd.state.db import make_engine

    export = tmp_path / "teams.csv"
    export.write_text("group,member\nsales,ana\nemea,group:sales\n")
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        assert main(["groups", "import", str(export), "--name", "crm-teams"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out == {"origin": "crm-teams", "memberships": 2, "added": 2, "removed": 0}
        export.write_text("group,member\nsales,bad id\n")
        assert main(["groups", "import", str(export), "--name", "crm-teams"]) == 2
        assert "line 2" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'contextd.db'}")
    assert effective_principals(engine, user_id="ana") == {
        "public", "user:ana", "group:sales", "group:emea"}
    engine.dispose()
