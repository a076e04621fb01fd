"""The crm_export connector on the sample CRM and on mutated copies of it."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.connectors.crm_export import CrmExportConnector
from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError, SourceError
from tests.conftest import SAMPLE_DATA
from tests.connectors.helpers import failures, pull_all, records, tombstones, touch


@pytest.fixture
def crm(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE_DATA / "crm", tmp_path / "crm"))


def connector(path: Path) -> CrmExportConnector:
    built = build_connector("crm", "crm_export", {"path": str(path)})
    assert isinstance(built, CrmExportConnector)
    return built


def write_deals(crm: Path, deals: list[dict[str, object]]) -> None:
    (crm / "deals.json").write_text(json.dumps(deals))
    touch(crm / "deals.json")


def test_sample_crm_records(crm: Path) -> None:
    batches, _ = pull_all(connector(crm))
    found = records(batches)
    assert not failures(batches)
    assert len(found) == 36
    assert {k.split(":")[0] for k in found} == {"account", "contact", "deal", "note"}
    assert sum(k.startswith("contact:") for k in found) == 10  # from contacts.csv
    deal = found["deal:D-101"]
    assert deal.title == "Deal: Acme renewal 2026 (Acme Logistics)"
    assert deal.acl == ("user:alice@northwind.example", "group:sales") and deal.kind == "crm"
    assert deal.entity_key == "deal:D-101" and deal.entities == ("account:A-001",)
    assert deal.updated_at == datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
    assert "Stage: negotiation" in deal.text and "Close date: 2026-12-15" in deal.text
    assert "Amount: 1200000" in deal.text
    assert deal.fields["stage"] == "negotiation" and deal.fields["amount"] == 1200000
    account = found["account:A-001"]
    assert account.title == "Account: Acme Logistics" and account.entities == ()
    assert account.text.startswith("Account Acme Logistics. Industry: Third-party logistics.")
    contact = found["contact:C-301"]
    assert contact.title == "Contact: Jane Porter (Acme Logistics)"
    assert contact.entities == ("account:A-001",) and contact.fields["role"]
    note = found["note:N-201"]
    assert note.title == "Note on Acme Logistics"
    assert note.entities == ("account:A-001", "deal:D-101")
    assert note.text.startswith("Acme asked for a three-year renewal")
    assert found["deal:D-109"].acl == ("user:carol@northwind.example", "group:support")


def test_second_pull_is_empty_and_only_changed_files_are_reread(crm: Path) -> None:
    conn = connector(crm)
    _, cursor = pull_all(conn)
    assert pull_all(conn, cursor)[0] == []
    deals = json.loads((crm / "deals.json").read_text())
    deals[0]["stage"] = "closed won"
    write_deals(crm, [d for d in deals if d["id"] != "D-105"])
    batches, cursor2 = pull_all(conn, cursor)
    assert set(records(batches)) == {f"deal:D-{n}" for n in range(101, 111)} - {"deal:D-105"}
    assert "Stage: closed won" in records(batches)["deal:D-101"].text
    assert tombstones(batches) == ["deal:D-105"]
    assert "deal:D-105" not in conn.list_ids()
    assert pull_all(conn, cursor2)[0] == []


def test_an_account_change_rereads_everything_for_the_titles(crm: Path) -> None:
    conn = connector(crm)
    _, cursor = pull_all(conn)
    accounts = json.loads((crm / "accounts.json").read_text())
    accounts[0]["name"] = "Acme Logistics Group"
    (crm / "accounts.json").write_text(json.dumps(accounts))
    touch(crm / "accounts.json")
    found = records(pull_all(conn, cursor)[0])
    assert len(found) == 36
    assert found["deal:D-101"].title == "Deal: Acme renewal 2026 (Acme Logistics Group)"


def test_malformed_rows_are_failures_and_the_rest_continue(crm: Path) -> None:
    conn = connector(crm)
    _, cursor = pull_all(conn)
    deals = json.loads((crm / "deals.json").read_text())
    deals += [{"id": "D-999", "name": "Orphan", "updated_at": "2026-01-01"},  # no owner/team
              {"id": "D-998", "name": "Bad date", "owner": "x", "updated_at": "soon"},
              {"name": "No id", "owner": "x", "team": "sales", "updated_at": "2026-01-01"},
              "not an object"]
    write_deals(crm, deals)
    batches, _ = pull_all(conn, cursor)
    errors = {f.source_id: f.error for f in failures(batches)}
    assert set(errors) == {"deal:D-999", "deal:D-998", "deals.json#row13", "deals.json#row14"}
    assert "neither owner nor team" in errors["deal:D-999"]
    assert "soon" in errors["deal:D-998"]
    assert len(records(batches)) == 10 and tombstones(batches) == []


def test_an_unreadable_file_is_one_failure_and_deletes_nothing(crm: Path) -> None:
    conn = connector(crm)
    _, cursor = pull_all(conn)
    (crm / "deals.json").write_text('[{"id": "D-101", ')  # truncated export
    touch(crm / "deals.json")
    batches, cursor2 = pull_all(conn, cursor)
    assert [f.source_id for f in failures(batches)] == ["deals.json"]
    assert tombstones(batches) == [] and records(batches) == {}
    assert cursor2 is not None and "deal:D-101" in cursor2["ids"]
    with pytest.raises(SourceError, match=r"deals\.json"):
        conn.list_ids()
    retried, _ = pull_all(conn, cursor2)  # still broken: retried, still no deletions
    assert [f.source_id for f in failures(retried)] == ["deals.json"]
    assert tombstones(retried) == []
    shutil.copy(SAMPLE_DATA / "crm/deals.json", crm / "deals.json")
    touch(crm / "deals.json", 1_900_000_100)
    fixed, _ = pull_all(conn, cursor2)
    assert len(records(fixed)) == 10 and not failures(fixed) and tombstones(fixed) == []


def test_csv_and_json_are_interchangeable_per_file(crm: Path) -> None:
    conn = connector(crm)
    _, cursor = pull_all(conn)
    deals = json.loads((crm / "deals.json").read_text())
    with (crm / "deals.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(deals[0]))
        writer.writeheader()
        writer.writerows(deals)
    with pytest.raises(ConfigError, match=r"both \.json and \.csv"):
        conn.check()
    (crm / "deals.json").unlink()
    batches, _ = pull_all(conn, cursor)
    assert len(records(batches)) == 10 and tombstones(batches) == []
    assert records(batches)["deal:D-101"].fields["amount"] == "1200000"  # CSV: strings


def test_check_rejects_a_directory_without_exports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no accounts"):
        connector(tmp_path).check()


def test_a_cursor_without_per_file_ids_rescans_without_false_deletions(crm: Path) -> None:
    """Cursors saved before ``file_ids`` existed: a full rescan, and an unreadable file
    keeps every old id that no readable file accounts for."""
    conn = connector(crm)
    _, cursor = pull_all(conn)
    assert cursor is not None
    old = {"files": cursor["files"], "ids": cursor["ids"]}
    batches, upgraded = pull_all(conn, old)
    assert len(records(batches)) == 36 and tombstones(batches) == []
    assert upgraded is not None and "file_ids" in upgraded
    (crm / "notes.json").write_text("{broken")
    touch(crm / "notes.json")
    batches, after = pull_all(conn, old)
    assert [f.source_id for f in failures(batches)] == ["notes.json"]
    assert tombstones(batches) == []
    assert after is not None and "note:N-201" in after["file_ids"]["notes.json"]


def test_an_account_name_is_copied_only_to_records_whose_readers_can_read_the_account(
        tmp_path: Path) -> None:
    """A deal open to more principals than its account shows the account id, not its name
    (a restricted account's name once reached everyone who could read the deal)."""
    crm = tmp_path / "crm"
    crm.mkdir()
    (crm / "accounts.json").write_text(json.dumps([
        {"id": "A-1", "name": "Project Falcon Holdings", "owner": "carol", "team": "m-and-a",
         "updated_at": "2026-11-01"},
        {"id": "A-2", "name": "Globex", "owner": "bob", "team": "sales",
         "updated_at": "2026-11-01"}]))
    write_deals(crm, [
        {"id": "D-1", "name": "Advisory retainer", "account_id": "A-1", "owner": "bob",
         "team": "sales", "updated_at": "2026-11-02"},
        {"id": "D-2", "name": "Renewal", "account_id": "A-2", "owner": "bob",
         "team": "sales", "updated_at": "2026-11-02"},
        {"id": "D-3", "name": "Integration", "account_id": "A-1", "team": "m-and-a",
         "updated_at": "2026-11-02"}])
    (crm / "notes.json").write_text(json.dumps([
        {"id": "N-1", "account_id": "A-1", "body": "Call went well.", "owner": "bob",
         "updated_at": "2026-11-03"}]))
    found = records(pull_all(connector(crm))[0])
    hidden = [found["deal:D-1"], found["note:N-1"]]
    for record in hidden:
        assert "Falcon" not in record.title + record.text, record
        assert "A-1" in record.title + record.text  # the relation stays, as an id
    assert found["deal:D-2"].title == "Deal: Renewal (Globex)"  # same readers: name shown
    assert found["deal:D-3"].title == "Deal: Integration (Project Falcon Holdings)"
    assert found["deal:D-1"].entities == ("account:A-1",)
