"""The filesystem connector on the sample docs and on mutated copies of them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.connectors.filesystem import FilesystemConnector, matches
from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError
from tests.conftest import SAMPLE_DATA
from tests.connectors.helpers import MANIFEST, failures, pull_all, records, tombstones, touch

FS_CONFIG = MANIFEST["docs"]["config"]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs"))


def fs(path: Path, **overrides: object) -> FilesystemConnector:
    connector = build_connector("docs", "filesystem", {**FS_CONFIG, "path": str(path),
                                                       **overrides})
    assert isinstance(connector, FilesystemConnector)
    return connector


def test_every_format_is_parsed_with_acls_from_the_rules(docs: Path) -> None:
    batches, _ = pull_all(fs(docs))
    found = records(batches)
    assert not failures(batches)
    assert len(found) == 15
    assert {p.rsplit(".", 1)[1] for p in found} == {"md", "html", "txt", "pdf", "docx"}
    assert {r.source for r in found.values()} == {"docs"}
    assert {r.kind for r in found.values()} == {"document"}
    finance = {k for k, r in found.items() if r.acl == ("group:finance",)}
    sales = {k for k, r in found.items() if r.acl == ("group:sales",)}
    assert finance == {"finance/q3-forecast.md", "finance/salary-bands.docx",
                       "finance/board-deck-notes.pdf"}
    assert sales == {"sales/pricing-playbook.md", "sales/discount-approvals.md",
                     "sales/acme-account-plan.docx"}
    assert all(found[k].acl == ("public",) for k in set(found) - finance - sales)
    assert "EBITDA" in found["finance/q3-forecast.md"].text
    assert "EBITDA" in found["finance/board-deck-notes.pdf"].text
    assert "Salary band" in found["finance/salary-bands.docx"].text
    assert "picks up to 600 items" in found["product/product-overview.html"].text
    handbook = found["support/support-handbook.md"]
    assert handbook.uri == (docs / "support/support-handbook.md").resolve().as_uri()
    assert handbook.uri.startswith("file:///")
    assert handbook.entity_key == "file:support/support-handbook.md"


def test_titles_come_from_front_matter_heading_html_or_file_name(docs: Path) -> None:
    (docs / "support/faq.md").write_text("Intro line\n\n## Frequently asked questions\n\nText.\n")
    found = records(pull_all(fs(docs))[0])
    assert found["policies/travel-policy-2026.md"].title == "Travel policy"  # front matter
    assert found["support/faq.md"].title == "Frequently asked questions"  # first heading
    assert found["product/product-overview.html"].title == "Northwind R2 product overview"
    assert found["product/release-notes.txt"].title == "release-notes"  # file stem
    assert found["finance/salary-bands.docx"].title == "Salary bands 2026"  # DOCX properties


def test_versioned_policies_share_an_entity_and_carry_front_matter_dates(docs: Path) -> None:
    found = records(pull_all(fs(docs))[0])
    travel = sorted((r.updated_at, r) for r in found.values() if r.entity_key == "policy:travel")
    assert [(d, r.source_id) for d, r in travel] == [
        (datetime(2024, 3, 1, tzinfo=UTC), "policies/travel-policy-2024.md"),
        (datetime(2025, 6, 1, tzinfo=UTC), "policies/travel-policy-2025.md"),
        (datetime(2026, 9, 15, tzinfo=UTC), "policies/travel-policy-2026.md")]
    assert ["45 EUR" in r.text for _, r in travel] == [True, False, False]
    assert ["55 EUR" in r.text for _, r in travel] == [False, True, False]
    assert ["65 EUR" in r.text for _, r in travel] == [False, False, True]
    remote = sorted((r.updated_at.date().isoformat(), r.source_id) for r in found.values()
                    if r.entity_key == "policy:remote-work")
    assert remote == [("2023-01-10", "policies/remote-work-2023.md"),
                      ("2026-05-20", "policies/remote-work-2026.md")]
    newest = found["policies/travel-policy-2026.md"]
    assert not newest.text.startswith("---") and "entity:" not in newest.text
    assert newest.fields["entity"] == "policy:travel"


def test_updated_at_falls_back_to_the_mtime_in_utc(docs: Path) -> None:
    notes = docs / "product/undated.txt"
    notes.write_text("Fleet Manager notes without a date of their own.")
    touch(notes, 1_800_000_000)
    found = records(pull_all(fs(docs))[0])
    assert found["product/undated.txt"].updated_at == datetime.fromtimestamp(
        1_800_000_000, UTC)
    assert found["product/undated.txt"].updated_at_source == "mtime"


def test_front_matter_acl_overrides_the_rules_and_is_validated(docs: Path) -> None:
    (docs / "sales/open-letter.md").write_text("---\nacl: [public]\n---\nHello everyone.\n")
    (docs / "bad.md").write_text("---\nacl: [everyone]\n---\nOops.\n")
    (docs / "empty-acl.md").write_text("---\nacl: []\n---\nOops.\n")
    batches, _ = pull_all(fs(docs))
    assert records(batches)["sales/open-letter.md"].acl == ("public",)
    errors = {f.source_id: f.error for f in failures(batches)}
    assert set(errors) == {"bad.md", "empty-acl.md"}
    assert "everyone" in errors["bad.md"]


def test_second_pull_yields_nothing_then_only_changes_and_tombstones(docs: Path) -> None:
    connector = fs(docs)
    first, cursor = pull_all(connector)
    assert cursor is not None and set(cursor["files"]) == set(records(first))
    again, cursor2 = pull_all(connector, cursor)
    assert again == [] and cursor2 == cursor
    handbook = docs / "support/support-handbook.md"
    handbook.write_text(handbook.read_text() + "\nNew rule: weekend coverage.\n")
    touch(handbook)
    (docs / "product/release-notes.txt").unlink()
    changed, cursor3 = pull_all(connector, cursor2)
    assert set(records(changed)) == {"support/support-handbook.md"}
    assert "weekend coverage" in records(changed)["support/support-handbook.md"].text
    assert tombstones(changed) == ["product/release-notes.txt"]
    assert connector.list_ids() == set(records(first)) - {"product/release-notes.txt"}
    assert pull_all(connector, cursor3)[0] == []


def test_only_deletions_still_move_the_cursor(docs: Path) -> None:
    connector = fs(docs)
    _, cursor = pull_all(connector)
    (docs / "sales/pricing-playbook.md").unlink()
    batches, cursor2 = pull_all(connector, cursor)
    assert tombstones(batches) == ["sales/pricing-playbook.md"] and not records(batches)
    assert cursor2 is not None and "sales/pricing-playbook.md" not in cursor2["files"]
    assert pull_all(connector, cursor2)[0] == []


def test_a_changed_acl_rule_rereads_everything(docs: Path) -> None:
    _, cursor = pull_all(fs(docs))
    stricter = fs(docs, default_acl=["group:staff"])
    found = records(pull_all(stricter, cursor)[0])
    assert len(found) == 15
    assert found["support/support-handbook.md"].acl == ("group:staff",)
    assert found["finance/q3-forecast.md"].acl == ("group:finance",)


def test_a_corrupt_pdf_is_a_failure_and_the_rest_continue(docs: Path) -> None:
    (docs / "support/broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    batches, cursor = pull_all(fs(docs))
    failed = failures(batches)
    assert [f.source_id for f in failed] == ["support/broken.pdf"]
    assert failed[0].error and failed[0].source == "docs"
    assert len(records(batches)) == 15
    assert cursor is not None and "support/broken.pdf" not in cursor["files"]
    retried, _ = pull_all(fs(docs), cursor)  # failures are retried, successes are not
    assert [f.source_id for f in failures(retried)] == ["support/broken.pdf"]
    assert records(retried) == {}
    assert "support/broken.pdf" in fs(docs).list_ids()  # it exists: not a deletion


def test_batches_respect_batch_size_and_each_carries_a_cursor(docs: Path) -> None:
    batches, cursor = pull_all(fs(docs, batch_size=4))
    assert [len(b.records) for b in batches] == [4, 4, 4, 3]
    assert all(b.cursor is not None for b in batches)
    assert cursor is not None and len(cursor["files"]) == 15
    assert len(batches[1].cursor["files"]) == 8  # type: ignore[index]


def test_include_globs_and_hidden_files(docs: Path) -> None:
    (docs / ".git").mkdir()
    (docs / ".git/notes.md").write_text("# internal\n")
    (docs / ".draft.md").write_text("# draft\n")
    (docs / "data.csv").write_text("a,b\n")
    ids = fs(docs).list_ids()
    assert ".git/notes.md" not in ids and ".draft.md" not in ids and "data.csv" not in ids
    only_md = fs(docs, include=["policies/*.md"]).list_ids()
    assert only_md == {f"policies/{p.name}" for p in (docs / "policies").glob("*.md")}


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("finance/q3.md", "finance/**", True),
    ("finance/deep/er/q3.md", "finance/**", True),
    ("finance/deep/q3.md", "finance/*", True),  # fnmatch: * crosses /
    ("finance.md", "finance/**", False),
    ("readme.md", "**/*.md", True),
    ("a/b/readme.md", "**/*.md", True),
    ("a/readme.MD", "**/*.md", False),
])
def test_glob_semantics(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


def test_check_rejects_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        fs(tmp_path / "missing").check()
    assert caught.value.details[0]["field"] == "config.path"
    with pytest.raises(ConfigError):
        list(fs(tmp_path / "missing").pull(None))


@pytest.mark.parametrize(("relpath", "clock", "day"), [
    ("policies/travel-policy-2024.md", "front_matter", "2024-03-01"),
    ("product/release-notes.txt", "front_matter", "2026-10-20"),
    ("product/product-overview.html", "html_meta", "2026-07-14"),
    ("finance/board-deck-notes.pdf", "pdf_metadata", "2026-09-28"),
    ("sales/acme-account-plan.docx", "docx_core", "2026-08-20"),
])
def test_updated_at_comes_from_the_files_own_clock(relpath: str, clock: str,
                                                   day: str) -> None:
    """A copy or a clone resets mtimes: every sample document carries its own date, and
    the record says which clock it used."""
    from contextd.connectors.filesystem import extract, to_record

    path = Path(__file__).resolve().parents[2] / "sample_data" / "docs" / relpath
    now = datetime(2030, 1, 1, tzinfo=UTC)
    rec = to_record("docs", relpath, path.as_uri(), extract(path), now, ["public"])
    assert (rec.updated_at_source, rec.updated_at.date().isoformat()) == (clock, day)


def test_mtime_is_the_last_resort_and_says_so(tmp_path: Path) -> None:
    from contextd.connectors.filesystem import extract, to_record

    path = tmp_path / "plain.txt"
    path.write_text("no date inside")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    rec = to_record("docs", "plain.txt", path.as_uri(), extract(path), now, ["public"])
    assert (rec.updated_at_source, rec.updated_at) == ("mtime", now)
