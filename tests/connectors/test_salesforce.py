"""``salesforce`` through ``run_sync`` into a real runtime, against a local HTTP fake.

Salesforce cannot be reached from here: :class:`FakeSalesforce` is a fake of that
unreachable SaaS API, a real HTTP server on loopback following its documented shapes
(SOQL ``query``/``queryAll`` with ``totalSize``/``done``/``nextRecordsUrl`` paging, the
client-credentials token endpoint, error arrays), which answers 429 with ``Retry-After``
and 503 when told to, and 401 ``INVALID_SESSION_ID`` for a bad or expired token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError, SourceAuthError
from contextd.core.telemetry import SOURCE_HTTP_RETRIES
from contextd.runtime import Runtime
from contextd.state.documents import live_source_ids
from contextd.sync.pull import run_sync
from tests.connectors.fake_saas import FakeSalesforce, Fault
from tests.connectors.helpers import (
    CrashedMidSync,
    crashing_after,
    pull_all,
    records,
    served,
    tombstones,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FAST_RETRY = {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.2}
ALICE, BOB = "005000000000001AAA", "005000000000002AAA"
ACME, JANE, RENEWAL, CALL = ("001000000000001AAA", "003000000000001AAA",
                             "006000000000001AAA", "00T000000000001AAA")


@pytest.fixture
def salesforce() -> Iterator[FakeSalesforce]:
    with FakeSalesforce() as api:
        api.put("User", ALICE, T0, Username="Alice@Northwind.example",
                UserRole={"Name": "Enterprise Sales"})
        api.put("User", BOB, T0, Username="bob@northwind.example", UserRole=None)
        api.put("Account", ACME, T0, Name="Acme Corp", Industry="Manufacturing",
                BillingCity="Lyon", OwnerId=ALICE)
        api.put("Contact", JANE, T0 + timedelta(minutes=1), Name="Jane Porter", Title="CFO",
                Email="jane@acme.example", AccountId=ACME, OwnerId=BOB)
        api.put("Opportunity", RENEWAL, T0 + timedelta(minutes=2),
                Name="Acme three-year renewal", StageName="Negotiation", Amount=240000,
                AccountId=ACME, OwnerId=ALICE)
        api.put("Task", CALL, T0 + timedelta(minutes=3), Subject="Call Jane about net 45",
                Description="Jane asked for net 45 payment terms.", Status="Open",
                WhatId=RENEWAL, OwnerId="00G000000000001AAA")  # a queue, not a user
        yield api


def config(api: FakeSalesforce, **overrides: Any) -> dict[str, Any]:
    return {"instance_url": api.base_url, "access_token": api.token, "batch_size": 2,
            "retry": FAST_RETRY, **overrides}


def test_records_acls_paging_and_the_soql_sent(salesforce: FakeSalesforce) -> None:
    for n in range(5):
        salesforce.put("Account", f"0010000000001{n:02d}AAA", T0 + timedelta(seconds=n),
                       Name=f"Account {n}", OwnerId=BOB)
    connector = build_connector("sf", "salesforce", config(salesforce))
    connector.check()
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert len(found) == 9
    acme = found[f"account:{ACME}"]
    assert acme.acl == ("user:alice@northwind.example", "group:enterprise-sales")
    assert acme.title == "Account: Acme Corp" and "City: Lyon." in acme.text
    assert found[f"contact:{JANE}"].acl == ("user:bob@northwind.example",)
    assert found[f"contact:{JANE}"].entities == (f"account:{ACME}",)
    assert found[f"task:{CALL}"].acl == ("user:00G000000000001AAA",)  # owner id when no user
    assert found[f"opportunity:{RENEWAL}"].updated_at == T0 + timedelta(minutes=2)
    assert "attributes" not in found[f"account:{ACME}"].fields
    pages = [p for p in (path for _, path in salesforce.requests) if "/query/" in p]
    assert pages  # 6 accounts, server pages of 3: nextRecordsUrl was followed
    assert all(b.cursor is not None for b in batches)
    assert max(len(b.records) for b in batches) == 2  # checkpoint every batch_size records
    assert cursor is not None and cursor["Account"]["modified"]["since"] == (
        "2026-11-20T09:00:04.000000Z")
    assert connector.list_ids() == set(found)
    salesforce.requests.clear()
    again, _ = pull_all(connector, cursor)
    assert not records(again) and not tombstones(again)  # the >= boundary is de-duplicated


def test_run_sync_serves_updates_and_drops_deleted(salesforce: FakeSalesforce,
                                                   runtime: Runtime) -> None:
    connector = build_connector("sf", "salesforce", config(salesforce))
    first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert first.stats.records == 4 and not first.failures
    alice = ("user:alice@northwind.example", "group:enterprise-sales")
    assert "Amount: 240000." in served(runtime, "Acme renewal opportunity amount", *alice)
    assert "Acme three-year renewal" not in served(runtime, "Acme renewal opportunity",
                                                   "user:bob@northwind.example")
    salesforce.put("Opportunity", RENEWAL, T0 + timedelta(hours=1), Amount=310000)
    salesforce.delete("Task", CALL, T0 + timedelta(hours=1))
    second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert second.stats.records == 1 and second.stats.changed == 1
    assert second.stats.deleted == 1 and second.reconciled_deletions == 0  # via queryAll
    text = served(runtime, "Acme renewal opportunity amount", *alice)
    assert "Amount: 310000." in text and "Amount: 240000." not in text
    assert f"task:{CALL}" not in live_source_ids(runtime.engine, source="sf")
    third = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert third.stats.records == 0 and third.stats.chunks_embedded == 0


def test_429_and_503_are_retried_and_the_run_succeeds(salesforce: FakeSalesforce,
                                                      runtime: Runtime) -> None:
    salesforce.fail_next(
        Fault(429, {"Retry-After": "1"}, [{"message": "Too many requests",
                                           "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        Fault(503, {}, [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}]))
    before = SOURCE_HTTP_RETRIES.labels("sf", "rate_limited")._value.get()
    connector = build_connector("sf", "salesforce", config(salesforce))
    started = time.monotonic()
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert time.monotonic() - started >= 1.0
    assert result.stats.records == 4 and not result.failures
    assert SOURCE_HTTP_RETRIES.labels("sf", "rate_limited")._value.get() == before + 1


def test_retries_stop_at_the_policy_limit(salesforce: FakeSalesforce) -> None:
    from contextd.core.errors import TransientSourceError

    salesforce.fail_next(*[Fault(503) for _ in range(10)])
    connector = build_connector("sf", "salesforce", config(
        salesforce, retry={**FAST_RETRY, "max_attempts": 3}))
    with pytest.raises(TransientSourceError, match="answered 503"):
        connector.check()
    assert len(salesforce.requests) == 3


def test_wrong_token_fails_fast_with_one_request(salesforce: FakeSalesforce,
                                                 runtime: Runtime) -> None:
    connector = build_connector("sf", "salesforce", config(salesforce,
                                                           access_token="00Dfake!wrong"))
    with pytest.raises(SourceAuthError) as caught:
        run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert "answered 401 (credentials rejected, not retried)" in caught.value.message
    assert caught.value.message.endswith("Unauthorized (INVALID_SESSION_ID)")
    assert "Session expired" not in caught.value.message  # no reply text
    assert "wrong" not in caught.value.message
    assert len(salesforce.requests) == 1


def test_client_credentials_flow_renews_an_expired_token(salesforce: FakeSalesforce) -> None:
    creds = {"instance_url": salesforce.base_url, "client_id": "3MVG9-client",
             "client_secret": "client-secret", "retry": FAST_RETRY}
    connector = build_connector("sf", "salesforce", creds)
    assert len(records(pull_all(connector)[0])) == 4
    assert salesforce.issued == 1
    salesforce.token = "00Dfake!rotated"  # the session expired at the server
    connector.check()
    assert salesforce.issued == 2
    bad = build_connector("sf", "salesforce", {**creds, "client_secret": "nope"})
    with pytest.raises(SourceAuthError, match=r"login rejected \(not retried\): sf: POST "
                       "/services/oauth2/token answered 400: Bad Request \\(invalid_client\\)$"):
        bad.check()
    assert "nope" not in repr(bad.config)  # type: ignore[attr-defined]


def test_malformed_record_fails_alone_and_is_retried(salesforce: FakeSalesforce,
                                                     runtime: Runtime) -> None:
    broken = "00T000000000002AAA"
    salesforce.put("Task", broken, T0 + timedelta(minutes=4), Status="Open", OwnerId=BOB)
    connector = build_connector("sf", "salesforce", config(salesforce))
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert result.stats.records == 4
    assert [(f.source_id, f.error) for f in result.failures] == [
        (f"task:{broken}", "ValueError: Task has neither Subject nor Description")]
    assert '"Status": "Open"' in result.failures[0].raw
    salesforce.records["Task"][broken]["Subject"] = "Send the MSA"  # fixed, same modstamp
    again = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert not again.failures and again.stats.records == 1
    assert f"task:{broken}" in live_source_ids(runtime.engine, source="sf")


def test_a_crash_mid_sync_resumes_with_every_record_once(salesforce: FakeSalesforce,
                                                         runtime: Runtime) -> None:
    """Records sharing one SystemModstamp straddle the checkpoint where the run dies."""
    same = T0 + timedelta(hours=3)
    ids = [f"0010000000002{n:02d}AAA" for n in range(7)]
    industries = ["Aerospace", "Bakery", "Cement", "Dairy", "Energy", "Furniture", "Glass"]
    for ident, industry in zip(ids, industries, strict=True):
        salesforce.put("Account", ident, same, Name=f"{industry} Holdings", Industry=industry,
                       OwnerId=BOB)
    connector = build_connector("sf", "salesforce", config(salesforce, objects=["Account"]))

    with pytest.raises(CrashedMidSync):
        run_sync(crashing_after(connector, batches=2), ingestor=runtime.ingestor,
                 engine=runtime.engine)
    done = live_source_ids(runtime.engine, source="sf")
    assert len(done) == 3  # server page of 3, checkpoints after 2 and after 1
    chunks_before = runtime.store.count(source="sf")
    resumed = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert resumed.stats.records == 5 and resumed.stats.unchanged == 0  # none pulled twice
    assert live_source_ids(runtime.engine, source="sf") == {f"account:{ACME}",
                                                            *(f"account:{i}" for i in ids)}
    assert runtime.store.count(source="sf") == chunks_before + resumed.stats.chunks_embedded
    assert runtime.store.count(source="sf") == 8  # one chunk per account, none duplicated


def test_a_late_commit_with_an_older_modstamp_is_read_and_costs_no_re_embedding(
        salesforce: FakeSalesforce, runtime: Runtime) -> None:
    """A transaction stamps its rows when it starts and shows them when it commits."""
    from contextd.core.types import utcnow

    now = utcnow()
    slow, fast = "001000000000070AAA", "001000000000071AAA"
    salesforce.put("Account", slow, now - timedelta(seconds=30), Name="Slow Import Ltd",
                   OwnerId=BOB)
    salesforce.uncommitted.add(slow)
    salesforce.put("Account", fast, now - timedelta(seconds=5), Name="Quick Edit GmbH",
                   OwnerId=BOB)
    connector = build_connector("sf", "salesforce", config(salesforce, objects=["Account"]))
    first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert first.stats.records == 2  # Acme and the fast one
    salesforce.uncommitted.clear()
    second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert f"account:{slow}" in live_source_ids(runtime.engine, source="sf")
    assert second.stats.changed == 1 and second.stats.unchanged == 1  # fast: read, not embedded
    assert second.stats.chunks_embedded == 1


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector("sf", "salesforce", {"instance_url": "nope", "access_token": "t",
                                             "objects": ["Lead"], "api_version": "61"})
    assert {d["field"] for d in caught.value.details} == {
        "config.instance_url", "config.objects.0", "config.api_version"}
    for bad, message in (
            ({}, "set either access_token, or client_id and client_secret"),
            ({"client_id": "abc"}, "needs both client_id and client_secret"),
            ({"access_token": "t", "client_id": "abc", "client_secret": "s"}, "set either")):
        with pytest.raises(ConfigError) as caught:
            build_connector("sf", "salesforce", {"instance_url": "https://x.my.salesforce.com",
                                                 **bad})
        [detail] = caught.value.details
        assert detail["field"] == "config.access_token" and message in detail["message"]
    with pytest.raises(ConfigError) as caught:
        build_connector("sf", "salesforce", {"instance_url": "https://x.my.salesforce.com",
                                             "access_token": "t",
                                             "extra_fields": {"Account": ["Name; DROP"]}})
    assert caught.value.details[0]["field"] == "config.extra_fields"


def test_fetch_rereads_quarantined_ids_and_tombstones_deleted_ones(
        salesforce: FakeSalesforce) -> None:
    """``fetch`` is what the runner calls with the quarantined ids before a pull."""
    broken = "00T000000000002AAA"
    salesforce.put("Task", broken, T0, Status="Open", OwnerId=BOB)
    salesforce.delete("Contact", JANE, T0 + timedelta(hours=1))
    connector = build_connector("sf", "salesforce", config(salesforce))
    batch = connector.fetch(  # type: ignore[attr-defined]
        [f"account:{ACME}", f"task:{broken}", f"contact:{JANE}", "lead:00Q000000000001AAA"])
    assert [r.source_id for r in batch.records] == [f"account:{ACME}"]
    assert [f.source_id for f in batch.failures] == [f"task:{broken}"]
    assert [t.source_id for t in batch.tombstones] == [f"contact:{JANE}"]
    assert batch.cursor is None
