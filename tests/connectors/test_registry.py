"""The registry: kinds, config validation errors that name the field, the demo manifest."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from contextd.connectors import CONNECTORS, build_connector, get_connector_class
from contextd.connectors.crm_export import CrmExportConnector
from contextd.connectors.email import MaildirConnector, MboxConnector
from contextd.connectors.filesystem import FilesystemConnector
from contextd.connectors.hubspot import HubSpotConnector
from contextd.connectors.imap import ImapConnector
from contextd.connectors.salesforce import SalesforceConnector
from contextd.connectors.sql import SqlConnector
from contextd.core.errors import ConfigError
from tests.conftest import SAMPLE_DATA
from tests.connectors.helpers import MANIFEST


def test_every_kind_is_registered_by_name() -> None:
    expected = {"filesystem": FilesystemConnector, "mbox": MboxConnector,
                "maildir": MaildirConnector, "crm_export": CrmExportConnector,
                "sql": SqlConnector, "imap": ImapConnector, "hubspot": HubSpotConnector,
                "salesforce": SalesforceConnector}
    assert dict(CONNECTORS) == expected
    assert get_connector_class("mbox") is MboxConnector


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"crm_export.*filesystem.*maildir.*mbox") as caught:
        build_connector("x", "sharepoint", {})
    assert caught.value.details[0]["field"] == "kind"


@pytest.mark.parametrize(("kind", "config", "field"), [
    ("filesystem", {}, "config.path"),
    ("filesystem", {"path": ""}, "config.path"),
    ("filesystem", {"path": "x", "acl": [{"glob": "*", "principals": ["bogus"]}]},
     "config.acl.0.principals"),
    ("filesystem", {"path": "x", "acl": [{"principals": ["public"]}]}, "config.acl.0.glob"),
    ("filesystem", {"path": "x", "default_acl": []}, "config.default_acl"),
    ("filesystem", {"path": "x", "default_acl": ["group:"]}, "config.default_acl"),
    ("filesystem", {"path": "x", "surprise": True}, "config.surprise"),
    ("filesystem", {"path": "x", "batch_size": 0}, "config.batch_size"),
    ("mbox", {"path": 3}, "config.path"),
    ("maildir", {}, "config.path"),
    ("crm_export", {}, "config.path"),
])
def test_bad_config_names_the_field(kind: str, config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector("x", kind, config)
    assert field in [d["field"] for d in caught.value.details]
    assert all(d["message"] for d in caught.value.details)
    assert field in caught.value.message


def test_bogus_principal_message_says_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector("x", "filesystem", {"path": "x", "acl": [{"glob": "*",
                                                                   "principals": ["bogus"]}]})
    assert "bogus" in caught.value.details[0]["message"]
    assert "group:<id>" in caught.value.details[0]["message"]


def test_config_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="object"):
        build_connector("x", "mbox", ["path"])  # type: ignore[arg-type]


def test_built_connectors_carry_their_name_and_validated_config(tmp_path: Path) -> None:
    built = build_connector("team-docs", "filesystem", {"path": str(tmp_path),
                                                        "default_acl": ["public"]})
    assert isinstance(built, FilesystemConnector) and built.name == "team-docs"
    assert built.kind == "filesystem" and built.config.default_acl == ["public"]
    assert "**/*.pdf" in built.config.include


def test_the_demo_manifest_builds_and_checks(tmp_path: Path) -> None:
    assert list(MANIFEST) == ["docs", "mail", "crm"]
    for entry in MANIFEST.values():
        config = {**entry["config"], "path": str(SAMPLE_DATA / entry["config"]["path"])}
        build_connector(entry["name"], entry["kind"], config).check()


def test_sample_principals_cover_crm_owners_teams_and_mail_addresses() -> None:
    users: dict[str, list[str]] = json.loads(
        (SAMPLE_DATA / "principals.json").read_text())["users"]
    crm = SAMPLE_DATA / "crm"
    rows = [r for name in ("accounts", "deals", "notes")
            for r in json.loads((crm / f"{name}.json").read_text())]
    rows += list(csv.DictReader((crm / "contacts.csv").open()))
    assert {r["owner"] for r in rows} <= set(users)
    assert {r["team"] for r in rows} <= {g for groups in users.values() for g in groups}
    addresses = set(re.findall(r"[a-z]+@northwind\.example",
                               (SAMPLE_DATA / "mail/northwind.mbox").read_text()))
    assert addresses <= set(users)
    # One identity per person: the mail address, also the CRM owner id.
    assert all(re.fullmatch(r"[a-z]+@northwind\.example", user) for user in users)
