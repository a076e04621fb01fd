"""Security tests for sources: secrets stay with their host, outbound targets are limited,
source replies never reach stored errors, SQL sources are only read, filesystem roots are
limited and nothing is public unless said so."""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from contextd.connectors.base import reply_summary
from contextd.connectors.filesystem import FilesystemConnector
from contextd.connectors.http import HttpSource, RetryPolicy
from contextd.connectors.imap import ImapConfig, ImapConnector
from contextd.connectors.limits import OutboundPolicy, SourceLimits
from contextd.connectors.registry import build_connector
from contextd.connectors.sql import SqlConnector, sanitised
from contextd.connectors.sqltext import single_select
from contextd.core.errors import ConfigError, SourceError
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.connectors.fake_saas import FakeHubSpot, FakeSalesforce, Fault
from tests.connectors.helpers import failures, pull_all, records
from tests.factories import keys
from tests.pg import scratch_database

FAST = {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.02, "max_attempts": 2}
CANARY = "CANARY-reply-7f3a"


def fields(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [d["field"] for d in exc.value.details]


def hubspot_config(api: FakeHubSpot, **overrides: Any) -> dict[str, Any]:
    return {"access_token": api.token, "base_url": api.base_url, "retry": FAST,
            "default_acl": ["group:sales"], **overrides}


def resolver(table: dict[str, str]) -> Callable[[str, int], list[Any]]:
    """DNS answers from a table (what a rebinding or hijacked resolver would say)."""
    def answer(host: str, port: int) -> list[Any]:
        if host in table:
            return [ipaddress.ip_address(table[host])]
        return [ipaddress.ip_address(host)]
    return answer


# --- secrets bound to their endpoint ------------------------------------------------------


def test_moving_hubspot_to_another_host_needs_the_token_again_and_it_never_leaves(
        runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with FakeHubSpot() as real, FakeHubSpot(token="whatever") as other, \
            LiveServer(runtime) as server, server.client(k["admin"]) as admin:
        created = admin.post("/v1/connectors", json={
            "name": "crm", "kind": "hubspot", "config": hubspot_config(real)})
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        for patch in ({"base_url": other.base_url},
                      {"base_url": other.base_url, "access_token": "********"}):
            resp = admin.patch(f"/v1/connectors/{cid}", json={"config": patch})
            assert resp.status_code == 422, resp.text
            assert [d["field"] for d in resp.json()["error"]["details"]] == ["config.base_url"]
            assert "access_token" in resp.json()["error"]["message"]
        assert admin.post(f"/v1/connectors/{cid}/sync?wait=true").status_code == 200
        assert real.requests and other.requests == []  # the stored token went nowhere else
        resp = admin.patch(f"/v1/connectors/{cid}", json={"config": {
            "base_url": other.base_url, "access_token": "pat-given-for-the-new-host"}})
        assert resp.status_code == 200, resp.text
        # Other fields still patch with the token kept, masked.
        resp = admin.patch(f"/v1/connectors/{cid}", json={"config": {"page_size": 50}})
        assert resp.status_code == 200 and resp.json()["config"]["access_token"] == "********"


def test_salesforce_imap_and_sql_hosts_are_bound_to_their_secrets(runtime: Runtime) -> None:
    service = runtime.connectors
    with FakeSalesforce() as sf:
        row = service.create(name="sf", kind="salesforce", config={
            "instance_url": sf.base_url, "client_id": "cid", "client_secret": "cs-secret",
            "default_acl": ["group:sales"]})
        with pytest.raises(ConfigError) as caught:
            service.update(row.id, config={"instance_url": "http://127.0.0.2:9"})
        assert fields(caught) == ["config.instance_url"] and "client_secret" in str(caught.value)
    imap = service.create(name="mail", kind="imap", config={
        "host": "127.0.0.1", "port": 1993, "user": "erin", "password": "imap-secret"})
    for patch in ({"host": "127.0.0.2"}, {"port": 2993}, {"security": "none"}):
        with pytest.raises(ConfigError) as caught:
            service.update(imap.id, config=patch)
        assert fields(caught) == [f"config.{next(iter(patch))}"]
    assert service.update(imap.id, config={"host": "127.0.0.2", "password": "new"}).config[
        "host"] == "127.0.0.2"
    sql = service.create(name="db", kind="sql", config={
        "url": "postgresql+psycopg://reader:db-secret@127.0.0.1/app", "table": "t",
        "key_column": "id", "updated_at_column": "ts", "text_template": "{id}",
        "default_acl": ["group:ops"]})
    with pytest.raises(ConfigError) as caught:
        service.update(sql.id, config={"url": "postgresql+psycopg://reader:********@127.0.0.2/app"})
    assert fields(caught) == ["config.url"]
    moved = service.update(sql.id, config={"url": "postgresql+psycopg://reader:pw2@127.0.0.2/app"})
    assert "127.0.0.2" in moved.config["url"]


# --- outbound targets -----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1", "http://169.254.10.1:8080",
    "http://[fe80::1]:8080", "http://[::ffff:169.254.169.254]/"])
def test_metadata_and_link_local_targets_are_refused(runtime: Runtime, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        runtime.connectors.create(name="crm", kind="hubspot", config={
            "access_token": "t", "base_url": url, "default_acl": ["group:sales"]})
    assert fields(caught) == ["config.base_url"]
    assert runtime.connectors.all() == []


def test_the_services_own_listener_is_refused(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(host="0.0.0.0", port=18765)
    for url in ("http://127.0.0.1:18765", "http://localhost:18765/v1"):
        with pytest.raises(ConfigError) as caught:
            runtime.connectors.create(name="crm", kind="hubspot", config={
                "access_token": "t", "base_url": url, "default_acl": ["group:sales"]})
        assert fields(caught) == ["config.base_url"] and "own listener" in str(caught.value)


def test_with_an_allow_list_every_other_host_is_refused(
        make_runtime: Callable[..., Runtime]) -> None:
    with FakeHubSpot() as api:
        strict = make_runtime(outbound_allow=["api.hubapi.com", "10.0.0.0/8"])
        with pytest.raises(ConfigError) as caught:
            strict.connectors.create(name="crm", kind="hubspot", config=hubspot_config(api))
        assert fields(caught) == ["config.base_url"] and "outbound_allow" in str(caught.value)
        listed = make_runtime(outbound_allow=["127.0.0.1/32"])
        row = listed.connectors.create(name="crm", kind="hubspot", config=hubspot_config(api))
        assert listed.connectors.run_blocking(row.id).status == "success"
        with pytest.raises(ConfigError):  # listing loopback does not open link-local
            listed.connectors.create(name="meta", kind="hubspot", config={
                **hubspot_config(api), "base_url": "http://169.254.169.254"})
        opened = make_runtime(outbound_allow=["169.254.169.254"])
        opened.connectors.create(name="meta", kind="hubspot", config={
            **hubspot_config(api), "base_url": "http://169.254.169.254"})


def test_every_connection_is_checked_again_and_goes_to_the_checked_address() -> None:
    with FakeHubSpot() as api:
        port = api.server.server_address[1]
        # DNS now answers with the metadata address: refused before anything is sent.
        rebound = OutboundPolicy(resolver=resolver({"crm.example.test": "169.254.169.254"}))
        source = HttpSource(source="crm", base_url=f"http://crm.example.test:{port}",
                            policy=RetryPolicy(**FAST), outbound=rebound,
                            headers={"Authorization": "Bearer secret"})
        with pytest.raises(SourceError, match="metadata address"):
            source.request_json("GET", "/crm/v3/owners")
        # A name that resolves to an allowed address is connected to at that address.
        pinned = OutboundPolicy(resolver=resolver({"crm.example.test": "127.0.0.1"}))
        source = HttpSource(source="crm", base_url=f"http://crm.example.test:{port}",
                            policy=RetryPolicy(**FAST), outbound=pinned,
                            headers={"Authorization": f"Bearer {api.token}"})
        assert source.request_json("GET", "/crm/v3/owners") is not None
        assert api.requests == [("GET", "/crm/v3/owners")]
    imap = ImapConnector("mail", ImapConfig(host="mail.example.test", user="u", password="p",
                                            connect_attempts=1),
                         outbound=OutboundPolicy(resolver=resolver(
                             {"mail.example.test": "169.254.1.1"})))
    with pytest.raises(SourceError, match="link-local"):
        imap.check()
    sql = build_connector("db", "sql", {
        "url": "postgresql+psycopg://u:p@db.example.test/x", "table": "t", "key_column": "id",
        "updated_at_column": "ts", "text_template": "{id}", "default_acl": ["group:ops"]},
        SourceLimits(outbound=OutboundPolicy(resolver=resolver(
            {"db.example.test": "127.0.0.1"}))))
    assert isinstance(sql, SqlConnector)
    sql.outbound = OutboundPolicy(resolver=resolver({"db.example.test": "fd00:ec2::254"}))
    with pytest.raises(SourceError, match="metadata address"):
        sql.check()


def test_redirects_are_not_followed() -> None:
    with FakeHubSpot() as api:
        api.fail_next(Fault(302, {"Location": "http://169.254.169.254/"}))
        source = HttpSource(source="crm", base_url=api.base_url, policy=RetryPolicy(**FAST))
        with pytest.raises(SourceError, match="redirect, not followed"):
            source.request_json("GET", "/crm/v3/owners")


# --- no source reply text in stored errors --------------------------------------------------


def test_no_source_reply_text_reaches_last_error(
        make_runtime: Callable[..., Runtime]) -> None:
    service = make_runtime(sync_retry_attempts=1, sync_retry_initial_seconds=0).connectors
    with FakeHubSpot() as api:
        row = service.create(name="crm", kind="hubspot", config=hubspot_config(api))
        for fault in (Fault(400, {}, {"status": "error", "category": "VALIDATION_ERROR",
                                      "message": f"bad filter {CANARY}"}),
                      Fault(404, {}, f"<html>{CANARY}</html>".encode()),
                      Fault(400, {}, {"error": CANARY.upper().replace("-", "_")})):
            api.fail_next(fault)
            run = service.run_blocking(row.id)
            assert run.status == "failed" and f"answered {fault.status}" in (run.error or "")
            status = service.status(service.get(row.id))
            for text_ in (run.error or "", status.last_error or ""):
                assert CANARY.lower() not in text_.lower().replace("_", "-"), text_
        api.fail_next(*[Fault(503, {}, {"message": CANARY})] * 2)
        run = service.run_blocking(row.id)
        assert run.status == "failed" and CANARY not in (run.error or "")


def test_imap_and_sql_replies_are_reduced_to_codes() -> None:
    assert reply_summary(b"[AUTHENTICATIONFAILED] Authentication failed " + CANARY.encode()) \
        == " [AUTHENTICATIONFAILED]"
    assert reply_summary(f"[{CANARY.upper()}] no such thing") == ""
    message = f'invalid input syntax for type integer: "{CANARY}" at column "amount"'
    assert sanitised(message, {"amount"}) == \
        'invalid input syntax for type integer: "…" at column "amount"'


# --- SQL sources are only read --------------------------------------------------------------


@pytest.fixture
def victim() -> Iterator[tuple[str, Engine]]:
    with scratch_database("ctxro") as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE victim (id int PRIMARY KEY, body text, acl text, "
                              "updated_at timestamptz NOT NULL DEFAULT now())"))
            conn.execute(text("INSERT INTO victim (id, body, acl) VALUES (1, 'one', "
                              "'group:ops'), (2, 'two', 'group:ops')"))
            conn.execute(text("CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS "
                              "'DELETE FROM victim; SELECT 1'"))
        yield url, engine
        engine.dispose()


def victim_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM victim")).scalar_one())


def sql_config(url: str, query: str) -> dict[str, Any]:
    return {"url": url, "query": query, "key_column": "id", "updated_at_column": "updated_at",
            "text_template": "{body}", "acl_column": "acl"}


def test_the_drop_never_runs(runtime: Runtime, victim: tuple[str, Engine]) -> None:
    url, engine = victim
    for query in ("SELECT * FROM victim; DROP TABLE victim; COMMIT;",
                  "SELECT * FROM victim -- x\n; DROP TABLE victim",
                  "DROP TABLE victim"):
        with pytest.raises(ConfigError) as caught:
            runtime.connectors.create(name="db", kind="sql", config=sql_config(url, query))
        assert fields(caught) == ["config.query"]
    assert victim_rows(engine) == 2 and runtime.connectors.all() == []
    row = runtime.connectors.create(name="db", kind="sql",
                                    config=sql_config(url, "SELECT * FROM victim"))
    with pytest.raises(ConfigError) as caught:
        runtime.connectors.update(row.id, config={
            "query": "SELECT * FROM victim WHERE ';' = ';'; DROP TABLE victim"})
    assert fields(caught) == ["config.query"]
    assert runtime.connectors.run_blocking(row.id).status == "success"
    assert victim_rows(engine) == 2


def test_a_write_fails_inside_the_read_only_transaction(victim: tuple[str, Engine]) -> None:
    url, engine = victim
    hidden = build_connector("db", "sql", sql_config(
        url, "SELECT id, body, acl, updated_at, wipe() AS w FROM victim"))
    hidden.check()  # the function is only called when rows are read
    with pytest.raises(ConfigError, match="tried to write"):
        pull_all(hidden)
    assert isinstance(hidden, SqlConnector)
    with hidden.engine.connect() as conn, pytest.raises(Exception, match="read-only"):
        conn.execute(text("DELETE FROM victim"))
    with hidden.engine.connect() as conn, pytest.raises(Exception, match="read-only"):
        conn.execute(text("WITH gone AS (DELETE FROM victim RETURNING id) "
                          "SELECT count(*) FROM gone"))
    hidden.close()
    assert victim_rows(engine) == 2


def test_sqlite_sources_are_query_only(tmp_path: Path) -> None:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE victim (id int, body text, acl text, updated_at text)")
        conn.execute("INSERT INTO victim VALUES (1, 'one', 'group:ops', '2026-01-01')")
    connector = build_connector("db", "sql", sql_config(f"sqlite:///{path}",
                                                        "SELECT * FROM victim"))
    assert isinstance(connector, SqlConnector)
    assert len(records(pull_all(connector)[0])) == 1
    with connector.engine.connect() as conn, pytest.raises(Exception, match="readonly"):
        conn.execute(text("DELETE FROM victim"))
    connector.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM victim").fetchone() == (1,)


@pytest.mark.parametrize("query", [
    "SELECT 1; SELECT 2", "SELECT 1;", "SELECT 'a\\'' ; DROP TABLE v; '",
    "SELECT 1 --x; DROP TABLE v", "SELECT 1 /* /* */ ; DROP TABLE v; */",
    "SELECT 1 # '\n; DROP TABLE v; -- '", "DELETE FROM v", "UPDATE v SET a = 1",
    "SELECT 'unterminated"])
def test_multi_statement_and_non_select_text_is_refused(query: str) -> None:
    with pytest.raises(ValueError):
        single_select(query)


@pytest.mark.parametrize("query", [
    "SELECT ';' AS semi FROM t", 'SELECT "odd;name" FROM t', "SELECT 1 -- trailing; note",
    "WITH a AS (SELECT 1) SELECT * FROM a", "SELECT 'it''s' FROM t /* ok */"])
def test_one_select_with_quoted_semicolons_is_accepted(query: str) -> None:
    assert single_select(query) == query


# --- filesystem roots and ACLs --------------------------------------------------------------


def test_filesystem_roots_are_limited_and_etc_is_refused(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "docs").mkdir(parents=True)
    (allowed / "docs" / "a.md").write_text("# A\n\nPolicy text.\n")
    (allowed / "etc-link").symlink_to("/etc")
    runtime = make_runtime(filesystem_allowed_roots=[allowed])
    k = keys(runtime.engine)
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin:
        resp = admin.post("/v1/connectors", json={
            "name": "etc", "kind": "filesystem", "config": {"path": "/etc",
                                                             "default_acl": ["public"]}})
        assert resp.status_code == 422, resp.text
        assert [d["field"] for d in resp.json()["error"]["details"]] == ["config.path"]
    for path in (allowed / "etc-link", allowed / ".." / "outside", Path("/")):
        with pytest.raises(ConfigError) as caught:
            runtime.connectors.create(name="fs", kind="filesystem",
                                      config={"path": str(path), "default_acl": ["public"]})
        assert fields(caught) == ["config.path"]
    for kind in ("crm_export", "mbox"):
        with pytest.raises(ConfigError) as caught:
            runtime.connectors.create(name="x", kind=kind, config={"path": "/etc"})
        assert fields(caught) == ["config.path"]
    row = runtime.connectors.create(name="fs", kind="filesystem", config={
        "path": str(allowed / "docs"), "default_acl": ["group:staff"]})
    assert runtime.connectors.run_blocking(row.id).status == "success"
    unlisted = make_runtime()  # no roots configured: no directory may be read
    with pytest.raises(ConfigError, match="none configured"):
        unlisted.connectors.create(name="fs", kind="filesystem", config={
            "path": str(allowed / "docs"), "default_acl": ["public"]})


def test_a_filesystem_connector_without_an_acl_is_refused_and_nothing_is_public_by_default(
        tmp_path: Path) -> None:
    (tmp_path / "finance").mkdir()
    (tmp_path / "finance" / "budget.md").write_text("# Budget\n\nNumbers.\n")
    (tmp_path / "lunch.md").write_text("# Lunch\n\nMenu.\n")
    with pytest.raises(ConfigError) as caught:
        build_connector("fs", "filesystem", {"path": str(tmp_path)})
    assert fields(caught) == ["config.default_acl"]
    ruled = build_connector("fs", "filesystem", {"path": str(tmp_path), "acl": [
        {"glob": "finance/**", "principals": ["group:finance"]}]})
    assert isinstance(ruled, FilesystemConnector)
    batches, _ = pull_all(ruled)
    assert {r.source_id: r.acl for r in records(batches).values()} == {
        "finance/budget.md": ("group:finance",)}
    assert [f.source_id for f in failures(batches)] == ["lunch.md"]  # not public: a failure
