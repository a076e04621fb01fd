"""Typed connector config: the union by ``kind`` in OpenAPI, ``/v1/connector-kinds``, and
the local checks on create (a bad path is a 422 naming ``config.path``, nothing saved)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from contextd.connectors.registry import CONNECTORS
from contextd.runtime import Runtime
from contextd.state.tables import ConnectorRow
from tests.conftest import LiveServer
from tests.factories import keys

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """Filesystem-like sources may read under the sample data only."""
    return make_runtime(filesystem_allowed_roots=[SAMPLE])


def saved(runtime: Runtime) -> list[str]:
    with Session(runtime.engine) as session:
        return [row.name for row in session.exec(select(ConnectorRow))]


def test_openapi_documents_each_kinds_config_as_a_union_by_kind(
        live_server: LiveServer) -> None:
    with live_server.client() as anonymous:
        schema = anonymous.get("/openapi.json").json()
    body = schema["paths"]["/v1/connectors"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "kind"
    assert set(body["discriminator"]["mapping"]) == set(CONNECTORS)
    components = schema["components"]["schemas"]
    for kind, cls in CONNECTORS.items():
        variant = components[body["discriminator"]["mapping"][kind].rsplit("/", 1)[1]]
        config_ref = variant["properties"]["config"]["$ref"].rsplit("/", 1)[1]
        fields = set(components[config_ref]["properties"])
        assert fields == set(cls.Config.model_fields), kind
    assert components["SqlConfig"]["properties"]["url"]["writeOnly"] is True


def test_connector_kinds_lists_every_kind_with_schema_and_secrets(
        live_server: LiveServer, runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with live_server.client(k["admin"]) as admin, live_server.client(k["agent"]) as agent:
        kinds = admin.get("/v1/connector-kinds").json()
        assert agent.get("/v1/connector-kinds").status_code == 403
    by_kind = {entry["kind"]: entry for entry in kinds}
    assert set(by_kind) == set(CONNECTORS)
    assert by_kind["filesystem"]["config_schema"]["required"] == ["path"]
    assert by_kind["imap"]["secrets"] == ["password"]
    assert by_kind["imap"]["config_schema"]["properties"]["password"]["writeOnly"] is True
    assert by_kind["salesforce"]["secrets"] == ["access_token", "client_secret"]
    assert all(entry["description"] for entry in kinds)


def _create(server: LiveServer, key: str, body: dict[str, Any]) -> Any:
    with server.client(key) as admin:
        return admin.post("/v1/connectors", json=body)


@pytest.mark.parametrize(("kind", "path", "field"), [
    ("filesystem", "no/such/dir", "config.path"),
    ("filesystem", "mail/northwind.mbox", "config.path"),  # a file, not a directory
    ("mbox", "no/such.mbox", "config.path"),
    ("maildir", "docs", "config.path"),  # a directory, but not a Maildir
    ("crm_export", "crm/accounts.json", "config.path"),
])
def test_a_path_that_cannot_work_is_422_naming_it_and_nothing_is_saved(
        live_server: LiveServer, runtime: Runtime, kind: str, path: str, field: str) -> None:
    admin = keys(runtime.engine)["admin"]
    config: dict[str, Any] = {"path": str(SAMPLE / path)}
    if kind == "filesystem":
        config["default_acl"] = ["public"]
    resp = _create(live_server, admin, {"name": "src", "kind": kind, "config": config})
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json()["error"]["details"]] == [field]
    assert saved(runtime) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "src", "kind": "nosuch", "config": {}}, "kind"),
    ({"name": "src", "config": {}}, "kind"),
    ({"name": "src", "kind": "filesystem", "config": {}}, "config.path"),
    ({"name": "src", "kind": "filesystem", "config": {"path": "x", "acl": [{"glob": "*"}]}},
     "config.acl.0.principals"),
    ({"name": "src", "kind": "imap", "config": {"host": "h", "user": "u", "password": "p",
                                                "ca_file": "/no/such/ca.pem"}},
     "config.ca_file"),
    ({"name": "src", "kind": "hubspot", "config": {"access_token": "t", "base_url": "nope"}},
     "config.base_url"),
])
def test_every_error_names_its_field_in_a_list_of_field_and_message(
        live_server: LiveServer, runtime: Runtime, body: dict[str, Any], field: str) -> None:
    resp = _create(live_server, keys(runtime.engine)["admin"], body)
    assert resp.status_code == 422, resp.text
    details = resp.json()["error"]["details"]
    assert isinstance(details, list) and details
    assert all(set(d) >= {"field", "message"} and d["message"] for d in details)
    assert field in [d["field"] for d in details]
    assert saved(runtime) == []


def test_a_valid_local_source_is_created_with_secrets_masked(
        live_server: LiveServer, runtime: Runtime) -> None:
    admin = keys(runtime.engine)["admin"]
    config = {"path": str(SAMPLE / "docs"), "default_acl": ["public"]}
    docs = _create(live_server, admin, {"name": "docs", "kind": "filesystem",
                                        "config": config})
    assert docs.status_code == 201, docs.text
    assert docs.json()["config"] == config
    mail = _create(live_server, admin, {
        "name": "mail", "kind": "imap",
        "config": {"host": "127.0.0.1", "user": "u", "password": "Pw-Secret9"}})
    assert mail.status_code == 201 and "Pw-Secret9" not in mail.text
    assert mail.json()["config"]["password"] == "********"
    with Session(runtime.engine) as session:
        row = session.exec(select(ConnectorRow).where(ConnectorRow.name == "mail")).one()
    assert row.config["password"] == "Pw-Secret9"
