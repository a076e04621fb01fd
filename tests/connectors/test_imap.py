"""``imap`` against a real Dovecot server started by the test (see imap_server.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from contextd.connectors.registry import build_connector
from contextd.core.errors import ConfigError, SourceAuthError, SourceError
from contextd.core.settings import Settings
from contextd.core.telemetry import SOURCE_HTTP_RETRIES
from contextd.runtime import Runtime
from contextd.state.documents import live_source_ids
from contextd.sync.pull import run_sync
from tests.connectors.conftest import BOB, ERIN, USERS
from tests.connectors.helpers import (
    CrashedMidSync,
    crashing_after,
    failures,
    pull_all,
    records,
    served,
    tombstones,
)
from tests.connectors.imap_server import DovecotServer


def message(ident: str, subject: str, body: str, *, sender: str = "alice@acme.example",
            to: str = ERIN, cc: str = "", html: str = "", attachment: str = "",
            date: str = "Tue, 10 Nov 2026 09:05:00 +0000") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    if cc:
        msg["Cc"] = cc
    msg["Message-ID"] = f"<{ident}@acme.example>"
    if date:
        msg["Date"] = date
    if body:
        msg.set_content(body)
    if html:
        if body:
            msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html, subtype="html")
    if attachment:
        msg.add_attachment(attachment, filename="terms.txt")
    return msg.as_bytes()


def mid(ident: str) -> str:
    return f"{ident}@acme.example"


def config(dovecot: DovecotServer, *folders: str, **overrides: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "user": ERIN,
            "password": USERS[ERIN], "folders": list(folders), **overrides}


def test_initial_sync_then_only_new_mail_then_nothing(dovecot: DovecotServer,
                                                      mailbox: str) -> None:
    dovecot.deliver(ERIN, message("m1", "Acme renewal", "Acme wants a 12% discount.",
                                  cc="dave@northwind.example"), mailbox)
    dovecot.deliver(ERIN, message("m2", "Newsletter", "", html="<p>The <b>lidar</b> ships.</p>"),
                    mailbox)
    dovecot.deliver(ERIN, message("m3", "Terms", "See attached.",
                                  attachment="Net 45 payment terms."), mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox, batch_size=2))
    connector.check()
    batches, cursor = pull_all(connector)
    found = records(batches)
    assert sorted(found) == [mid("m1"), mid("m2"), mid("m3")]
    assert len([b for b in batches if b.records]) == 2  # batch_size=2, checkpoint after each
    assert all(b.cursor is not None for b in batches)
    assert set(found[mid("m1")].acl) == {"user:alice@acme.example", f"user:{ERIN}",
                                         "user:dave@northwind.example"}
    assert "Acme wants a 12% discount." in found[mid("m1")].text
    assert "The\nlidar\nships." in found[mid("m2")].text and "<b>" not in found[mid("m2")].text
    assert "[Attachment terms.txt]\nNet 45 payment terms." in found[mid("m3")].text
    assert found[mid("m1")].kind == "email" and found[mid("m1")].source == "mail"
    assert connector.list_ids() == set(found)

    dovecot.deliver(ERIN, message("m4", "Follow-up", "Signed today."), mailbox)
    batches, cursor = pull_all(connector, cursor)
    assert list(records(batches)) == [mid("m4")] and not tombstones(batches)
    batches, cursor = pull_all(connector, cursor)
    assert not records(batches) and not tombstones(batches) and not failures(batches)


def test_expunged_mail_becomes_a_tombstone_unless_another_folder_keeps_it(
        dovecot: DovecotServer, mailbox: str) -> None:
    archive = f"{mailbox}-archive"
    for ident in ("e1", "e2"):
        dovecot.deliver(ERIN, message(ident, ident, f"body {ident}"), mailbox)
    dovecot.deliver(ERIN, message("e2", "e2", "body e2"), archive)  # a copy in the archive
    connector = build_connector("mail", "imap", config(dovecot, mailbox, archive))
    batches, cursor = pull_all(connector)
    assert sorted(r.source_id for b in batches for r in b.records) == [mid("e1"), mid("e2")]
    dovecot.expunge(ERIN, "<e1@acme.example>", mailbox)
    dovecot.expunge(ERIN, "<e2@acme.example>", mailbox)
    batches, cursor = pull_all(connector, cursor)
    assert tombstones(batches) == [mid("e1")]  # e2 still lives in the archive
    assert connector.list_ids() == {mid("e2")}
    dovecot.expunge(ERIN, "<e2@acme.example>", archive)
    batches, cursor = pull_all(connector, cursor)
    assert tombstones(batches) == [mid("e2")]
    assert pull_all(connector, cursor)[0][-1].tombstones == []


def test_wrong_password_fails_fast_without_retries(dovecot: DovecotServer, mailbox: str) -> None:
    connector = build_connector("mail", "imap", config(dovecot, mailbox, password="wrong"))
    before = SOURCE_HTTP_RETRIES.labels("mail", "connection")._value.get()
    started = time.monotonic()
    with pytest.raises(SourceAuthError, match=f"login as '{ERIN}' on 127.0.0.1 rejected"):
        list(connector.pull(None))
    assert time.monotonic() - started < 5  # dovecot delays a failed login; no second try
    assert SOURCE_HTTP_RETRIES.labels("mail", "connection")._value.get() == before
    assert "wrong" not in repr(connector.config)  # type: ignore[attr-defined]  # SecretStr


def test_unreachable_server_is_transient_and_missing_folder_is_config_error(
        dovecot: DovecotServer, mailbox: str) -> None:
    from contextd.core.errors import TransientSourceError
    from tests.conftest import _free_port

    closed = build_connector("mail", "imap", {**config(dovecot, mailbox),
                                              "port": _free_port(), "connect_attempts": 2})
    with pytest.raises(TransientSourceError, match="cannot connect"):
        closed.check()
    missing = build_connector("mail", "imap", config(dovecot, "NoSuchFolder"))
    with pytest.raises(ConfigError, match="cannot open folder 'NoSuchFolder'") as caught:
        missing.check()
    assert caught.value.details == [{"field": "config.folders",
                                     "message": "no folder 'NoSuchFolder'"}]


def test_uidvalidity_change_rereads_the_folder_and_embeds_nothing(
        dovecot: DovecotServer, mailbox: str, runtime: Runtime) -> None:
    for ident in ("u1", "u2"):
        dovecot.deliver(ERIN, message(ident, f"Subject {ident}", f"Body of {ident}."), mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox))
    first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert first.stats.records == 2 and first.stats.chunks_embedded > 0
    dovecot.set_uidvalidity(ERIN, 7, mailbox)
    second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert second.stats.records == 2  # the whole folder was read again ...
    assert second.stats.unchanged == 2 and second.stats.chunks_embedded == 0  # ... not embedded
    assert second.stats.deleted == 0
    from contextd.state.documents import load_cursor

    cursor = load_cursor(runtime.engine, name="mail")
    assert cursor is not None and cursor["folders"][mailbox]["uidvalidity"] == 7
    assert live_source_ids(runtime.engine, source="mail") == {mid("u1"), mid("u2")}


def test_a_malformed_message_is_a_failure_retried_until_expunged(
        dovecot: DovecotServer, mailbox: str) -> None:
    dovecot.deliver(ERIN, message("ok1", "Fine", "A fine message."), mailbox)
    dovecot.deliver(ERIN, message("bad", "No date", "This one has no Date.", date=""), mailbox)
    dovecot.deliver(ERIN, message("ok2", "Fine too", "Another one."), mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox))
    batches, cursor = pull_all(connector)
    assert sorted(records(batches)) == [mid("ok1"), mid("ok2")]
    assert [(f.source_id, f.error) for f in failures(batches)] == [
        (mid("bad"), "ValueError: message has no Date header")]
    assert "This one has no Date." in failures(batches)[0].raw
    batches, cursor = pull_all(connector, cursor)  # retried on the next pull
    assert [f.source_id for f in failures(batches)] == [mid("bad")] and not records(batches)
    dovecot.expunge(ERIN, "<bad@acme.example>", mailbox)
    batches, cursor = pull_all(connector, cursor)
    assert not failures(batches) and tombstones(batches) == [mid("bad")]
    assert cursor is not None and cursor["folders"][mailbox]["retry"] == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_verify_the_server_certificate(dovecot: DovecotServer, mailbox: str,
                                                        security: str) -> None:
    dovecot.deliver(ERIN, message("t1", "Over TLS", "Encrypted."), mailbox)
    port = dovecot.tls_port if security == "tls" else dovecot.port
    trusted = build_connector("mail", "imap", config(
        dovecot, mailbox, security=security, port=port, ca_file=str(dovecot.cert)))
    assert list(records(pull_all(trusted)[0])) == [mid("t1")]
    untrusted = build_connector("mail", "imap", config(dovecot, mailbox, security=security,
                                                       port=port))
    with pytest.raises(SourceError, match="not trusted"):
        untrusted.check()


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector("mail", "imap", {"host": "x", "user": "u", "security": "ssl"})
    fields = {d["field"] for d in caught.value.details}
    assert fields == {"config.password", "config.security"}
    with pytest.raises(ConfigError) as caught:
        build_connector("mail", "imap", {"host": "x", "user": "u", "password": "p",
                                         "port": "many", "folders": []})
    assert {d["field"] for d in caught.value.details} == {"config.port", "config.folders"}


def test_run_sync_serves_mail_to_its_recipients_and_resumes_after_a_crash(
        dovecot: DovecotServer, mailbox: str, make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime()
    bodies = ["Helix ordered two picking robots for the Lyon warehouse.",
              "The quarterly board meeting moves to Thursday at noon.",
              "Cobalt Freight asks for a refund on the damaged pallet jack.",
              "Payroll closes early this month because of the holiday.",
              "Please renew the fire safety certificate before December.",
              "Zephyr Labs signed the pilot for autonomous forklift fleet routing."]
    for n, body in enumerate(bodies):
        dovecot.deliver(ERIN, message(f"r{n}", f"Note {n}", body), mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox, batch_size=2))

    with pytest.raises(CrashedMidSync):
        run_sync(crashing_after(connector, batches=2), ingestor=runtime.ingestor,
                 engine=runtime.engine)
    assert len(live_source_ids(runtime.engine, source="mail")) == 4
    embedded_before = runtime.store.count(source="mail")
    resumed = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert resumed.stats.records == 2  # only what the crash left, nothing twice
    assert live_source_ids(runtime.engine, source="mail") == {mid(f"r{n}") for n in range(6)}
    assert runtime.store.count(source="mail") == embedded_before + resumed.stats.chunks_embedded
    assert bodies[5] in served(runtime, "autonomous forklift fleet pilot", f"user:{ERIN}")
    assert bodies[5] not in served(runtime, "autonomous forklift fleet pilot", f"user:{BOB}")

    dovecot.deliver(ERIN, message("r6", "Note 6", "Order 6: lidar upgrade kits."), mailbox)
    dovecot.expunge(ERIN, "<r0@acme.example>", mailbox)
    third = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert third.stats.records == 1 and third.stats.deleted == 1
    assert "Order 6: lidar upgrade kits." in served(runtime, "lidar upgrade kits", f"user:{ERIN}")
    assert bodies[0] not in served(runtime, "Helix picking robots Lyon", f"user:{ERIN}")
    again = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert again.stats.records == 0 and again.stats.chunks_embedded == 0


def test_fetch_rereads_quarantined_ids_and_tombstones_vanished_ones(
        dovecot: DovecotServer, mailbox: str) -> None:
    """``fetch`` is what the runner calls with the quarantined ids before a pull."""
    dovecot.deliver(ERIN, message("f1", "Fine", "Readable."), mailbox)
    dovecot.deliver(ERIN, message("f2", "Broken", "No date here.", date=""), mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox))
    batch = connector.fetch([mid("f1"), mid("f2"), mid("gone")])  # type: ignore[attr-defined]
    assert [r.source_id for r in batch.records] == [mid("f1")]
    assert [(f.source_id, f.error) for f in batch.failures] == [
        (mid("f2"), "ValueError: message has no Date header")]
    assert [t.source_id for t in batch.tombstones] == [mid("gone")]
    assert batch.cursor is None  # a re-read never moves the checkpoint


def test_new_mail_is_served_by_v1_context_over_http_and_expunged_mail_is_not(
        dovecot: DovecotServer, mailbox: str, runtime: Runtime, live_server: Any) -> None:
    """Dovecot -> run_sync -> the real API over HTTP, scoped to the mail's recipients."""
    from tests.factories import keys

    agent = keys(runtime.engine)["agent"]
    connector = build_connector("mail", "imap", config(dovecot, mailbox))

    def ask(user: str) -> list[dict[str, Any]]:
        with live_server.client(agent) as client:
            resp = client.post("/v1/context", json={
                "user_id": user, "query": "Which warehouse gets the conveyor retrofit?"})
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert ask(ERIN) == []
    dovecot.deliver(ERIN, message("h1", "Conveyor retrofit", "The conveyor retrofit goes to "
                                  "the Rotterdam warehouse in January."), mailbox)
    run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    items = ask(ERIN)
    assert [(i["source_id"], i["kind"], i["source"]) for i in items] == [
        (mid("h1"), "email", "mail")]
    assert "Rotterdam warehouse" in items[0]["text"]
    assert ask(BOB) == []  # not a recipient
    dovecot.expunge(ERIN, "<h1@acme.example>", mailbox)
    run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    assert ask(ERIN) == []


_SYNC_SCRIPT = """
import json, sys
from contextd.connectors.registry import build_connector
from contextd.core.settings import Settings
from contextd.sync.pull import run_sync
from contextd.runtime import Runtime
runtime = Runtime(Settings(data_dir=sys.argv[1]))
runtime.migrate()
result = run_sync(build_connector("mail", "imap", json.loads(sys.argv[2])),
                  ingestor=runtime.ingestor, engine=runtime.engine)
print(json.dumps(result.stats.as_dict()))
runtime.close()
"""


def test_a_killed_sync_resumes_with_every_message_once(
        dovecot: DovecotServer, mailbox: str, tmp_path: Any) -> None:
    """SIGKILL a real sync process mid-run, start it again: each message once, none re-embedded."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from sqlalchemy import create_engine

    total = 60
    conn = dovecot.client(ERIN)
    for n in range(total):
        conn.append(f'"{mailbox}"', None, None, message(
            f"k{n}", f"Shipment {n}", f"Shipment {n} of {total}: pallet batch {n * 17} "
            f"leaves dock {n % 7} for customer number {n * 31}."))
    conn.logout()
    cfg = json.dumps(config(dovecot, mailbox, batch_size=5))
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SYNC_SCRIPT, str(data), cfg], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = None
    try:
        deadline = time.monotonic() + 240
        done: set[str] = set()
        while len(done) < 10:  # at least two checkpointed batches
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.05)
            if (data / "contextd.db").exists():
                engine = engine or create_engine(f"sqlite:///{data / 'contextd.db'}")
                try:
                    done = live_source_ids(engine, source="mail")
                except Exception:  # tables not created yet
                    done = set()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert len(done) < total, "the sync finished before it could be killed"
    if engine is not None:
        engine.dispose()
    killed_at = len(live_source_ids(create_engine(f"sqlite:///{data / 'contextd.db'}"),
                                    source="mail"))
    finish = subprocess.run([sys.executable, "-c", _SYNC_SCRIPT, str(data), cfg], env=env,
                            capture_output=True, text=True, timeout=600, check=True)
    stats = json.loads(finish.stdout.strip().splitlines()[-1])
    print(f"killed with {killed_at}/{total} stored; the restart pulled {stats['records']}, "
          f"embedded {stats['chunks_embedded']}")
    runtime = Runtime(Settings(data_dir=data))
    try:
        assert live_source_ids(runtime.engine, source="mail") == {mid(f"k{n}")
                                                                  for n in range(total)}
        assert runtime.store.count(source="mail") == total  # one chunk each, none twice
        assert stats["records"] <= total - killed_at + 5  # at most the batch in flight again
        assert stats["chunks_embedded"] <= total - killed_at  # finished work not re-embedded
    finally:
        runtime.close()


def test_two_copies_in_one_folder_are_one_record(dovecot: DovecotServer, mailbox: str) -> None:
    raw = message("twin", "Twice", "Delivered twice by a forwarding rule.")
    dovecot.deliver(ERIN, raw, mailbox)
    dovecot.deliver(ERIN, raw, mailbox)
    connector = build_connector("mail", "imap", config(dovecot, mailbox))
    batches, cursor = pull_all(connector)
    assert [r.source_id for b in batches for r in b.records] == [mid("twin")]
    conn = dovecot.client(ERIN)  # expunge one copy only: the other still holds the message
    try:
        conn.select(f'"{mailbox}"')
        conn.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        conn.expunge()
    finally:
        conn.logout()
    batches, cursor = pull_all(connector, cursor)
    assert not tombstones(batches) and connector.list_ids() == {mid("twin")}
