"""mbox and Maildir connectors on the sample mailbox and on mutated copies of it."""

from __future__ import annotations

import hashlib
import mailbox
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.connectors.email import to_record
from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError
from tests.conftest import SAMPLE_DATA
from tests.connectors.helpers import failures, pull_all, records, tombstones, touch

MBOX = SAMPLE_DATA / "mail/northwind.mbox"
THREADS = {"acme-1": 3, "fc-1": 2, "sup-1": 2, "ev-1": 2, "helix-1": 2, "allhands-1": 1,
           "news-1": 1, "cobalt-1": 2}
NO_DATE = (b"From x@y Mon Jan  5 00:00:00 2026\nMessage-ID: <nodate@northwind.example>\n"
           b"From: x@northwind.example\nTo: y@northwind.example\nSubject: no date\n\nhi\n\n")


def mid(name: str) -> str:
    return f"{name}@northwind.example"


def test_mbox_sample_threads_acls_and_text() -> None:
    connector = build_connector("mail", "mbox", {"path": str(SAMPLE_DATA / "mail")})
    batches, _ = pull_all(connector)
    found = records(batches)
    assert not failures(batches)
    assert len(found) == 15
    threads: dict[str, int] = {}
    for record in found.values():
        threads[record.fields["thread_id"]] = threads.get(record.fields["thread_id"], 0) + 1
        assert record.entities == (f"thread:{record.fields['thread_id']}",)
        assert record.entity_key == f"email:{record.source_id}"
        assert record.kind == "email" and record.source == "mail"
    assert threads == {mid(k): v for k, v in THREADS.items()}
    reply = found[mid("acme-3")]
    assert reply.title == "Re: Acme renewal: discount request"
    assert reply.fields["thread_id"] == mid("acme-1")
    assert reply.fields["in_reply_to"] == mid("acme-2")
    assert reply.fields["from"] == "alice@northwind.example"
    assert reply.fields["to"] == ["erin@northwind.example"]
    assert reply.fields["cc"] == ["dave@northwind.example"]
    assert set(reply.acl) == {"user:alice@northwind.example", "user:erin@northwind.example",
                              "user:dave@northwind.example"}
    assert reply.updated_at == datetime(2026, 11, 10, 9, 5, tzinfo=UTC)
    assert reply.text.startswith("From: alice@northwind.example\nTo: erin@northwind.example\n"
                                 "Cc: dave@northwind.example\nDate: Tue, 10 Nov 2026")
    assert "Jane Porter confirmed the three-year term" in reply.text
    forecast = found[mid("fc-1")]
    assert set(forecast.acl) == {"user:bob@northwind.example", "user:erin@northwind.example"}
    news = found[mid("news-1")]  # HTML only
    assert "pick-rate export API" in news.text and "<b>" not in news.text


def test_mbox_second_pull_is_empty_and_list_ids_matches() -> None:
    connector = build_connector("mail", "mbox", {"path": str(MBOX)})
    batches, cursor = pull_all(connector)
    assert cursor is not None and sorted(cursor["ids"]) == sorted(records(batches))
    assert pull_all(connector, cursor)[0] == []
    assert connector.list_ids() == set(records(batches))


def test_a_message_without_date_is_a_failure_and_the_rest_are_yielded(tmp_path: Path) -> None:
    box = tmp_path / "box.mbox"
    box.write_bytes(MBOX.read_bytes() + b"\n" + NO_DATE)
    connector = build_connector("mail", "mbox", {"path": str(box)})
    batches, _ = pull_all(connector)
    failed = failures(batches)
    assert [(f.source_id, f.error) for f in failed] == [
        ("nodate@northwind.example", "ValueError: message has no Date header")]
    assert "Subject: no date" in failed[0].raw
    assert len(records(batches)) == 15
    assert "nodate@northwind.example" in connector.list_ids()  # it exists, it just failed


def test_changed_mbox_file_is_reread_and_removed_messages_are_tombstoned(
        tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    original = MBOX.read_text()
    first, _, rest = original.partition("\nFrom bob@")
    (mail / "a.mbox").write_text(first + "\n")
    (mail / "b.mbox").write_text("From bob@" + rest)
    connector = build_connector("mail", "mbox", {"path": str(mail)})
    batches, cursor = pull_all(connector)
    assert len(records(batches)) == 15
    assert set(records(batches)) >= {mid("acme-1"), mid("fc-1")}
    # Drop the first message of b.mbox (fc-1): only b.mbox is re-read.
    (mail / "b.mbox").write_text("From erin@" + rest.partition("\nFrom erin@")[2])
    touch(mail / "b.mbox")
    batches, cursor2 = pull_all(connector, cursor)
    assert tombstones(batches) == [mid("fc-1")]
    assert mid("acme-1") not in records(batches) and mid("fc-2") in records(batches)
    assert len(records(batches)) == 11
    # Remove a whole file: its messages become tombstones.
    (mail / "a.mbox").unlink()
    batches, cursor3 = pull_all(connector, cursor2)
    assert sorted(tombstones(batches)) == [mid("acme-1"), mid("acme-2"), mid("acme-3")]
    assert records(batches) == {}
    assert pull_all(connector, cursor3)[0] == []


def test_to_record_edge_cases() -> None:
    raw = (b"From: Alice <Alice@Northwind.example>\nTo: bob@northwind.example\n"
           b"Date: Mon, 05 Jan 2026 10:00:00 -0000\nSubject: hi\n\nbody\n")
    record = to_record("mail", raw)
    assert record.source_id == hashlib.sha256(raw).hexdigest()  # no Message-ID
    assert record.updated_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # -0000 is UTC
    assert record.acl == ("user:alice@northwind.example", "user:bob@northwind.example")
    assert record.fields["thread_id"] == record.source_id
    with pytest.raises(ValueError, match="unparseable Date"):
        to_record("mail", raw.replace(b"Mon, 05 Jan 2026 10:00:00 -0000", b"yesterday"))
    with pytest.raises(ValueError, match="no sender or recipient"):
        to_record("mail", b"Date: Mon, 05 Jan 2026 10:00:00 +0000\nSubject: x\n\nbody\n")


def test_in_reply_to_names_the_thread_when_references_are_missing() -> None:
    raw = (b"Message-ID: <r@x>\nIn-Reply-To: <root@x>\nFrom: a@x.example\nTo: b@x.example\n"
           b"Date: Mon, 05 Jan 2026 10:00:00 +0100\nSubject: re\n\nbody\n")
    record = to_record("mail", raw)
    assert record.fields["thread_id"] == "root@x" and record.entities == ("thread:root@x",)


def make_maildir(root: Path) -> mailbox.Maildir:
    box = mailbox.Maildir(str(root), create=True)
    for message in mailbox.mbox(str(MBOX), create=False):
        box.add(message)
    return box


def test_maildir_pull_moves_and_deletions(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    connector = build_connector("mail", "maildir", {"path": str(tmp_path / "Maildir")})
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert len(found) == 15 and not failures(batches)
    assert found[mid("acme-2")].fields["thread_id"] == mid("acme-1")
    assert pull_all(connector, cursor)[0] == []
    keys = {box.get_message(k)["Message-ID"].strip("<>"): k for k in box.iterkeys()}
    read = box.get_message(keys[mid("acme-1")])
    read.set_subdir("cur")
    read.add_flag("S")
    box[keys[mid("acme-1")]] = read  # new/ -> cur/ with a flag: renamed, same message
    box.remove(keys[mid("sup-1")])
    batches, _ = pull_all(connector, cursor)
    assert set(records(batches)) == {mid("acme-1")}
    assert tombstones(batches) == [mid("sup-1")]
    assert connector.list_ids() == set(found) - {mid("sup-1")}


def test_check_reports_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_connector("m", "mbox", {"path": str(tmp_path / "nope.mbox")}).check()
    with pytest.raises(ConfigError, match=r"no \*\.mbox"):
        build_connector("m", "mbox", {"path": str(tmp_path)}).check()
    with pytest.raises(ConfigError, match="not a Maildir"):
        build_connector("m", "maildir", {"path": str(tmp_path)}).check()


def test_a_mailbox_copy_keeps_ids(tmp_path: Path) -> None:
    """Ids come from Message-ID, not position: a copy elsewhere names the same records."""
    copy = Path(shutil.copy(MBOX, tmp_path / "copy.mbox"))
    ids = build_connector("m", "mbox", {"path": str(copy)}).list_ids()
    assert ids == build_connector("m", "mbox", {"path": str(MBOX)}).list_ids()
