"""The three first connectors on the sample data and on mutated copies of it."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError
from contextd.core.types import Batch
from tests.conftest import SAMPLE_DATA

FS_CONFIG = json.loads((SAMPLE_DATA / "connectors.json").read_text())[0]["config"]


def pull_all(connector, cursor=None) -> tuple[list[Batch], dict | None]:  # type: ignore[no-untyped-def]
    batches = list(connector.pull(cursor))
    last = next((b.cursor for b in reversed(batches) if b.cursor is not None), cursor)
    return batches, last


def records(batches: list[Batch]) -> dict:  # type: ignore[type-arg]
    return {r.source_id: r for b in batches for r in b.records}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs"))


def fs(path: Path):  # type: ignore[no-untyped-def]
    return build_connector("docs", "filesystem", {**FS_CONFIG, "path": str(path)})


def test_filesystem_parses_every_format_with_acls_and_versions(docs: Path) -> None:
    batches, _ = pull_all(fs(docs))
    found = records(batches)
    assert not [f for b in batches for f in b.failures]
    assert {p.rsplit(".", 1)[1] for p in found} == {"md", "html", "txt", "pdf", "docx"}
    assert found["finance/q3-forecast.md"].acl == ("group:finance",)
    assert found["finance/board-deck-notes.pdf"].acl == ("group:finance",)
    assert "EBITDA" in found["finance/board-deck-notes.pdf"].text
    assert "Salary band" in found["finance/salary-bands.docx"].text
    assert found["sales/pricing-playbook.md"].acl == ("group:sales",)
    assert found["support/support-handbook.md"].acl == ("public",)
    assert found["product/product-overview.html"].title == "Northwind R2 picking robot" or \
        found["product/product-overview.html"].title == "Northwind R2 product overview"
    travel = sorted((r.updated_at, r.source_id) for r in found.values()
                    if r.entity_key == "policy:travel")
    assert [t[0].date().isoformat() for t in travel] == ["2024-03-01", "2025-06-01",
                                                         "2026-09-15"]
    assert "---" not in found["policies/travel-policy-2026.md"].text
    mtime_dated = found["product/release-notes.txt"]
    assert mtime_dated.updated_at == datetime.fromtimestamp(
        (docs / "product/release-notes.txt").stat().st_mtime, UTC)


def test_filesystem_is_incremental_and_emits_tombstones(docs: Path) -> None:
    connector = fs(docs)
    _, cursor = pull_all(connector)
    again, cursor2 = pull_all(connector, cursor)
    assert records(again) == {} and not any(b.tombstones for b in again)
    handbook = docs / "support/support-handbook.md"
    handbook.write_text(handbook.read_text() + "\nNew rule: weekend coverage.\n")
    os.utime(handbook, ns=(1, 1_900_000_000_000_000_000))
    (docs / "product/release-notes.txt").unlink()
    changed, cursor3 = pull_all(connector, cursor2)
    assert set(records(changed)) == {"support/support-handbook.md"}
    assert [t.source_id for b in changed for t in b.tombstones] == ["product/release-notes.txt"]
    assert "product/release-notes.txt" not in connector.list_ids()
    assert not pull_all(connector, cursor3)[0][0].records


def test_acl_rule_change_rereads_everything(docs: Path) -> None:
    _, cursor = pull_all(fs(docs))
    stricter = build_connector("docs", "filesystem", {
        **FS_CONFIG, "path": str(docs), "default_acl": ["group:staff"]})
    found = records(pull_all(stricter, cursor)[0])
    assert found["support/support-handbook.md"].acl == ("group:staff",)


def test_a_corrupt_file_is_a_failure_and_the_rest_continues(docs: Path) -> None:
    (docs / "support/broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    batches, cursor = pull_all(fs(docs))
    failures = [f for b in batches for f in b.failures]
    assert [f.source_id for f in failures] == ["support/broken.pdf"]
    assert failures[0].error
    assert len(records(batches)) == 15
    retried, _ = pull_all(fs(docs), cursor)
    assert [f.source_id for b in retried for f in b.failures] == ["support/broken.pdf"]


def test_mbox_threads_acls_and_html(tmp_path: Path) -> None:
    connector = build_connector("mail", "mbox", {"path": str(SAMPLE_DATA / "mail")})
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert len(found) == 15 and not any(b.failures for b in batches)
    reply = found["acme-3@northwind.example"]
    assert reply.fields["thread_id"] == "acme-1@northwind.example"
    assert reply.entities == ("thread:acme-1@northwind.example",)
    assert set(reply.acl) == {"user:alice@northwind.example", "user:erin@northwind.example",
                              "user:dave@northwind.example"}
    assert reply.updated_at == datetime(2026, 11, 10, 9, 5, tzinfo=UTC)
    assert "pick-rate export API" in found["news-1@northwind.example"].text
    assert "<b>" not in found["news-1@northwind.example"].text
    assert pull_all(connector, cursor)[0] == []


def test_mbox_bad_message_is_a_failure_and_deletions_are_tombstones(tmp_path: Path) -> None:
    box = tmp_path / "box.mbox"
    original = (SAMPLE_DATA / "mail/northwind.mbox").read_text()
    box.write_text(original + "\nFrom x@y Mon Jan 1 00:00:00 2026\nMessage-ID: <nodate@x>\n"
                   "From: x@northwind.example\nTo: y@northwind.example\nSubject: no date\n\nhi\n")
    connector = build_connector("mail", "mbox", {"path": str(box)})
    batches, cursor = pull_all(connector)
    assert [f.error for b in batches for f in b.failures] == [
        "ValueError: message has no Date header"]
    assert len(records(batches)) == 15
    first, _, _rest = original.partition("\nFrom bob@")
    box.write_text(first + "\n")
    batches, _ = pull_all(connector, cursor)
    gone = {t.source_id for b in batches for t in b.tombstones}
    assert "fc-1@northwind.example" in gone and "acme-1@northwind.example" not in gone


def test_crm_export_records_acls_and_failures(tmp_path: Path) -> None:
    crm = Path(shutil.copytree(SAMPLE_DATA / "crm", tmp_path / "crm"))
    connector = build_connector("crm", "crm_export", {"path": str(crm)})
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert len(found) == 36
    deal = found["deal:D-101"]
    assert deal.acl == ("user:alice", "group:sales")
    assert deal.entity_key == "deal:D-101" and deal.entities == ("account:A-001",)
    assert "negotiation" in deal.text and deal.fields["stage"] == "negotiation"
    assert found["contact:C-301"].kind == "crm"
    deals = json.loads((crm / "deals.json").read_text())
    deals.append({"id": "D-999", "name": "Orphan", "updated_at": "2026-01-01"})
    deals.append({"id": "D-998", "name": "Bad date", "owner": "x", "updated_at": "soon"})
    (crm / "deals.json").write_text(json.dumps([d for d in deals if d["id"] != "D-105"]))
    batches, _ = pull_all(connector, cursor)
    assert {f.source_id for b in batches for f in b.failures} == {"deals:D-999", "deals:D-998"}
    assert [t.source_id for b in batches for t in b.tombstones] == ["deal:D-105"]


@pytest.mark.parametrize(("kind", "config", "field"), [
    ("filesystem", {}, "config.path"),
    ("filesystem", {"path": "x", "acl": [{"glob": "*", "principals": ["bogus"]}]},
     "config.acl.0.principals"),
    ("filesystem", {"path": "x", "default_acl": []}, "config.default_acl"),
    ("filesystem", {"path": "x", "surprise": True}, "config.surprise"),
    ("mbox", {"path": 3}, "config.path"),
    ("crm_export", {}, "config.path"),
])
def test_bad_config_names_the_field(kind: str, config: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        build_connector("x", kind, config)
    assert field in [d["field"] for d in caught.value.details]


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"crm_export.*filesystem.*maildir.*mbox"):
        build_connector("x", "sharepoint", {})


def test_check_reports_missing_paths(tmp_path: Path) -> None:
    for kind in ("filesystem", "mbox", "maildir", "crm_export"):
        with pytest.raises(ConfigError, match=r"does not exist|not a|no accounts"):
            build_connector("x", kind, {"path": str(tmp_path / "missing")}).check()
