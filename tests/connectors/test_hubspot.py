"""``hubspot`` through ``run_sync`` into a real runtime, against a local HTTP fake.

HubSpot cannot be reached from here: :class:`FakeHubSpot` is a fake of that unreachable
SaaS API, a real HTTP server on loopback following its documented shapes (search with
``after`` paging and the search window, archived listing, owners, error bodies), which
answers 429 with ``Retry-After`` and 503 when told to, and 401 for a bad token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contextd.connectors.hubspot import HubSpotConnector
from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError, SourceAuthError, SourceError
from contextd.core.telemetry import SOURCE_HTTP_RETRIES
from contextd.runtime import Runtime
from contextd.state.documents import live_source_ids
from contextd.sync.pull import run_sync
from tests.connectors.fake_saas import FakeHubSpot, Fault
from tests.connectors.helpers import pull_all, records, served, tombstones

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FAST_RETRY = {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.2}


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as api:
        api.owners = [
            {"id": "101", "email": "Alice@Northwind.example", "firstName": "Alice",
             "teams": [{"id": "7", "name": "Enterprise Sales", "primary": True}]},
            {"id": "102", "email": "bob@northwind.example", "firstName": "Bob", "teams": []},
        ]
        api.put("companies", "1", T0, name="Acme Corp", domain="acme.example",
                industry="Manufacturing", hubspot_owner_id="101")
        api.put("contacts", "11", T0 + timedelta(minutes=1), firstname="Jane",
                lastname="Porter", email="jane@acme.example", jobtitle="CFO",
                hubspot_owner_id="102", associatedcompanyid="1")
        api.put("deals", "21", T0 + timedelta(minutes=2), dealname="Acme three-year renewal",
                amount="240000", dealstage="contractsent", hubspot_owner_id="101")
        api.put("notes", "31", T0 + timedelta(minutes=3),
                hs_note_body="<p>Jane asked for <b>net 45</b> payment terms.</p>",
                hs_timestamp=T0.isoformat(), hubspot_owner_id="102", hubspot_team_id="7")
        yield api


def config(api: FakeHubSpot, **overrides: Any) -> dict[str, Any]:
    return {"access_token": api.token, "base_url": api.base_url, "page_size": 2,
            "retry": FAST_RETRY, **overrides}


def test_records_acls_and_paging(hubspot: FakeHubSpot) -> None:
    for n in range(5):  # enough companies for three pages of two
        hubspot.put("companies", str(100 + n), T0 + timedelta(seconds=n), name=f"Co {n}",
                    hubspot_owner_id="102")
    connector = build_connector("crm", "hubspot", config(hubspot))
    connector.check()
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert sorted(found) == sorted(["company:1", *(f"company:{100 + n}" for n in range(5)),
                                    "contact:11", "deal:21", "note:31"])
    assert found["company:1"].acl == ("user:alice@northwind.example",
                                      "group:enterprise-sales")
    assert found["contact:11"].acl == ("user:bob@northwind.example",)
    assert found["note:31"].acl == ("user:bob@northwind.example", "group:enterprise-sales")
    assert found["company:1"].title == "Company: Acme Corp"
    assert "Industry: Manufacturing." in found["company:1"].text
    assert found["contact:11"].title == "Contact: Jane Porter"
    assert found["contact:11"].entities == ("company:1",)
    assert found["note:31"].text.startswith("Jane asked for\nnet 45\npayment terms.")
    assert found["deal:21"].updated_at == T0 + timedelta(minutes=2)  # the source's own time
    company_searches = [b for b in hubspot.searches if "name" in b["properties"]]
    assert len(company_searches) >= 3  # 6 companies, pages of 2
    assert sum(len(b.records) for b in batches) == len(found)  # none yielded twice
    assert cursor is not None
    assert cursor["companies"]["modified"]["since"] == "2026-11-20T09:00:04.000000Z"
    assert connector.list_ids() == set(found)
    again, _ = pull_all(connector, cursor)
    assert not records(again) and not tombstones(again)  # the >= boundary is de-duplicated


def test_run_sync_serves_updates_and_drops_archived(hubspot: FakeHubSpot,
                                                    runtime: Runtime) -> None:
    connector = build_connector("crm", "hubspot", config(hubspot))
    first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert first.stats.records == 4 and not first.failures
    alice = ("user:alice@northwind.example", "group:enterprise-sales")
    assert "Acme three-year renewal" in served(runtime, "Acme renewal deal amount", *alice)
    assert "Acme three-year renewal" not in served(runtime, "Acme renewal deal amount",
                                                   "user:bob@northwind.example")

    hubspot.put("deals", "21", T0 + timedelta(hours=1), amount="310000")
    hubspot.archive("notes", "31", T0 + timedelta(hours=1))
    second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert second.stats.records == 1 and second.stats.changed == 1
    assert second.stats.deleted == 1
    text = served(runtime, "Acme renewal deal amount", *alice)
    assert "Amount: 310000." in text and "Amount: 240000." not in text
    assert live_source_ids(runtime.engine, source="crm") == {"company:1", "contact:11",
                                                             "deal:21"}
    third = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert third.stats.records == 0 and third.stats.chunks_embedded == 0
    assert third.reconciled_deletions == 0


def test_429_and_503_are_retried_and_the_run_succeeds(hubspot: FakeHubSpot,
                                                      runtime: Runtime) -> None:
    hubspot.fail_next(
        Fault(429, {"Retry-After": "1"}, {"status": "error", "errorType": "RATE_LIMIT",
                                          "message": "You have reached your secondly limit."}),
        Fault(503, {}, {"status": "error", "message": "Service Unavailable"}),
        Fault(503, {"Retry-After": "0"}),
    )
    retries = {r: SOURCE_HTTP_RETRIES.labels("crm", r)._value.get()
               for r in ("rate_limited", "server_error")}
    connector = build_connector("crm", "hubspot", config(hubspot))
    started = time.monotonic()
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert result.stats.records == 4 and not result.failures
    assert SOURCE_HTTP_RETRIES.labels("crm", "rate_limited")._value.get() == \
        retries["rate_limited"] + 1
    assert SOURCE_HTTP_RETRIES.labels("crm", "server_error")._value.get() == \
        retries["server_error"] + 2


def test_wrong_token_fails_fast_with_one_request(hubspot: FakeHubSpot, runtime: Runtime) -> None:
    connector = build_connector("crm", "hubspot", config(hubspot, access_token="pat-wrong"))
    with pytest.raises(SourceAuthError) as caught:
        run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert "answered 401 (credentials rejected, not retried)" in caught.value.message
    assert caught.value.message.endswith("Unauthorized (INVALID_AUTHENTICATION)")
    assert "credentials not found" not in caught.value.message  # no reply text
    assert "pat-wrong" not in caught.value.message
    assert len(hubspot.requests) == 1  # no retry storm


def test_malformed_records_fail_alone_and_are_retried(hubspot: FakeHubSpot,
                                                      runtime: Runtime) -> None:
    hubspot.put("notes", "32", T0 + timedelta(minutes=4), hs_note_body="",
                hubspot_owner_id="101")  # a note without a body
    hubspot.put("deals", "22", T0 + timedelta(minutes=5), dealname="Orphan deal")  # no owner
    hubspot.put("companies", "2", T0 + timedelta(minutes=6), name="Broken Co",
                hubspot_owner_id="101")
    hubspot.raw_results["2"] = {"id": "2", "properties": "not-an-object"}
    connector = build_connector("crm", "hubspot", config(hubspot))
    result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert result.stats.records == 4  # the four good ones
    assert sorted((f.source_id, f.error) for f in result.failures) == [
        ("company:2", "ValueError: result has no properties object"),
        ("deal:22", "ValueError: record has neither owner nor team and no default_acl is "
                    "configured: refusing to guess its ACL"),
        ("note:32", "ValueError: note has no body")]
    # Fixed at the source without a newer modification time: the retry list finds them.
    del hubspot.raw_results["2"]
    hubspot.objects["deals"]["22"]["properties"]["hubspot_owner_id"] = "102"
    again = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert [(f.source_id, f.error) for f in again.failures] == [
        ("note:32", "ValueError: note has no body")]
    assert {"company:2", "deal:22"} <= live_source_ids(runtime.engine, source="crm")
    assert "Orphan deal" in served(runtime, "Orphan deal", "user:bob@northwind.example")


def test_a_record_modified_mid_pull_cannot_hide_another(hubspot: FakeHubSpot) -> None:
    """With offset paging, modifying a record already read shifts the next one out of view."""
    for n in range(6):
        hubspot.put("companies", str(100 + n), T0 + timedelta(hours=1, seconds=n),
                    name=f"Co {n}", hubspot_owner_id="102")

    def touch_the_first(count: int) -> None:
        if count == 1:  # right after the first page, company 1 is edited
            hubspot.put("companies", "1", T0 + timedelta(hours=2), name="Acme Corporation")

    hubspot.after_search = touch_the_first
    connector = build_connector("crm", "hubspot", config(hubspot, object_types=["companies"]))
    batches, _ = pull_all(connector)
    pulled = [r.source_id for b in batches for r in b.records]
    assert sorted(set(pulled)) == sorted(["company:1", *(f"company:{100 + n}"
                                                         for n in range(6))])
    assert pulled.count("company:1") == 2  # the old and the new version, in order
    assert records(batches)["company:1"].title == "Company: Acme Corporation"


@pytest.mark.parametrize("settle_seconds", [60, 0])
def test_a_change_indexed_late_is_still_read_within_the_settle_window(
        hubspot: FakeHubSpot, settle_seconds: int) -> None:
    """HubSpot's search index lags: a change may appear after later ones were served."""
    from contextd.core.types import utcnow

    now = utcnow()
    hubspot.put("deals", "50", now - timedelta(seconds=20), dealname="Late deal",
                hubspot_owner_id="101")
    hubspot.unindexed.add("50")
    hubspot.put("deals", "51", now - timedelta(seconds=10), dealname="Early deal",
                hubspot_owner_id="101")
    connector = build_connector("crm", "hubspot", config(
        hubspot, object_types=["deals"], settle_seconds=settle_seconds))
    batches, cursor = pull_all(connector)
    assert {"deal:21", "deal:51"} == set(records(batches))
    hubspot.unindexed.clear()  # the index catches up
    batches, _ = pull_all(connector, cursor)
    if settle_seconds:
        assert "deal:50" in records(batches)  # read again from before the settle window
    else:
        assert "deal:50" not in records(batches)  # what the window prevents: a silent gap


def test_the_search_window_is_never_reached(hubspot: FakeHubSpot) -> None:
    """HubSpot's search stops at 10,000 results; the fake and connector scale it to 6."""
    hubspot.search_window = 6
    for n in range(13):  # two contacts per second: ``after`` pages within a second
        hubspot.put("contacts", str(200 + n), T0 + timedelta(hours=2, seconds=n // 2),
                    firstname=f"C{n}", hubspot_owner_id="101")
    connector = build_connector("crm", "hubspot", config(hubspot, object_types=["contacts"]))
    assert isinstance(connector, HubSpotConnector)
    connector.search_window = 6
    batches, _ = pull_all(connector)
    assert sorted(records(batches)) == sorted(
        ["contact:11", *(f"contact:{200 + n}" for n in range(13))])
    assert sum(len(b.records) for b in batches) == 14  # none twice
    assert any(b.get("after") for b in hubspot.searches)
    assert all(int(b.get("after") or 0) + 2 <= 6 for b in hubspot.searches)
    # More records at one instant than the window holds: a clear error, not a silent gap.
    for n in range(7):
        hubspot.put("contacts", str(300 + n), T0 + timedelta(hours=3), firstname=f"D{n}",
                    hubspot_owner_id="101")
    with pytest.raises(SourceError, match=r"over 6 contacts share the modification time "
                                          r"2026-11-20T12:00:00\.000000Z"):
        pull_all(connector)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector("crm", "hubspot", {"base_url": "ftp:/x", "object_types": ["tickets"],
                                           "page_size": 500, "default_acl": ["everyone"]})
    assert {d["field"] for d in caught.value.details} == {
        "config.access_token", "config.base_url", "config.object_types.0",
        "config.page_size", "config.default_acl"}
    connector = build_connector("crm", "hubspot", {"access_token": "pat-secret"})
    assert "pat-secret" not in repr(connector.config)  # type: ignore[attr-defined]
    assert "pat-secret" not in connector.config.model_dump_json()  # type: ignore[attr-defined]


def test_fetch_rereads_quarantined_ids_and_tombstones_archived_ones(
        hubspot: FakeHubSpot) -> None:
    """``fetch`` is what the runner calls with the quarantined ids before a pull."""
    hubspot.put("notes", "32", T0, hs_note_body="", hubspot_owner_id="101")
    hubspot.archive("deals", "21", T0 + timedelta(hours=1))
    connector = build_connector("crm", "hubspot", config(hubspot))
    batch = connector.fetch(  # type: ignore[attr-defined]
        ["company:1", "note:32", "deal:21", "ticket:5", "company:#3"])
    assert [r.source_id for r in batch.records] == ["company:1"]
    assert [f.source_id for f in batch.failures] == ["note:32"]
    assert [t.source_id for t in batch.tombstones] == ["deal:21"]
    assert batch.cursor is None
