"""``mbox`` and ``maildir``: one record per message, ACL = sender and every recipient.

The thread id is the first Message-ID in References (else In-Reply-To, else the message's
own id), kept in ``entities`` as ``thread:<id>``: messages of a thread are related, not
versions of one another, so each message is its own entity and none supersedes another.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator, Mapping
from datetime import UTC
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from contextd.connectors.base import ConnectorConfig, chunked, file_state, short_hash
from contextd.core.errors import ConfigError
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone

BATCH_SIZE = 200
_PARSER = BytesParser(policy=policy.default)


class MailConfig(ConnectorConfig):
    path: str = Field(min_length=1)


def _ids(value: str | None) -> list[str]:
    return [part.strip("<>") for part in (value or "").split() if part.strip("<>")]


def addresses(message: EmailMessage, *headers: str) -> list[str]:
    values = [str(v) for h in headers for v in message.get_all(h, [])]
    return [addr.lower() for _, addr in getaddresses(values) if "@" in addr]


def body_text(message: EmailMessage) -> str:
    """The text/plain body, else the HTML body as text, plus plain-text attachments."""
    part = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if part is not None:
        content = part.get_content()
        if part.get_content_type() == "text/html":
            from bs4 import BeautifulSoup

            content = BeautifulSoup(content, "html.parser").get_text("\n", strip=True)
        text = str(content)
    for attachment in message.iter_attachments():
        if attachment.get_content_type() == "text/plain":
            name = attachment.get_filename() or "attachment.txt"
            text += f"\n\n[Attachment {name}]\n{attachment.get_content()}"
    return text


def to_record(source: str, raw: bytes) -> SourceRecord:
    """Map one RFC 5322 message to a record; ValueError when it cannot be trusted."""
    message = _PARSER.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    message_id = (_ids(message.get("Message-ID")) or [short_hash(raw)])[0]
    date_header = message.get("Date")
    if not date_header:
        raise ValueError("message has no Date header")
    try:
        sent_at = parsedate_to_datetime(str(date_header))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unparseable Date header {date_header!r}") from exc
    if sent_at.tzinfo is None:
        raise ValueError(f"Date header without a timezone {date_header!r}")
    sender = addresses(message, "From")
    recipients = addresses(message, "To", "Cc")
    if not sender and not recipients:
        raise ValueError("message has no sender or recipient address")
    references = _ids(message.get("References"))
    in_reply_to = _ids(message.get("In-Reply-To"))
    thread_id = (references or in_reply_to or [message_id])[0]
    header = (f"From: {message.get('From', '')}\nTo: {message.get('To', '')}\n"
              + (f"Cc: {message.get('Cc')}\n" if message.get("Cc") else "")
              + f"Date: {date_header}\n\n")
    acl = tuple(sorted({f"user:{a}" for a in sender + recipients}))
    return SourceRecord(
        source=source, source_id=message_id, kind="email",
        title=str(message.get("Subject") or "(no subject)"),
        text=header + body_text(message), updated_at=sent_at.astimezone(UTC), acl=acl,
        uri=f"mid:{message_id}", author=sender[0] if sender else "",
        entity_key=f"email:{message_id}", entities=(f"thread:{thread_id}",),
        fields={"from": sender, "to": addresses(message, "To"), "cc": addresses(message, "Cc"),
                "thread_id": thread_id, "message_id": message_id,
                "in_reply_to": in_reply_to[0] if in_reply_to else None},
    )


class _MailConnector:
    """Shared pull logic: re-read the mailbox only when one of its files changed."""

    Config: ClassVar[type[ConnectorConfig]] = MailConfig

    def __init__(self, name: str, config: MailConfig) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path).expanduser()

    def check(self) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, list[int]]:
        raise NotImplementedError

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        """(location, raw bytes) of every message."""
        raise NotImplementedError

    def _scan(self) -> tuple[list[SourceRecord], list[RecordFailure]]:
        records, failures = [], []
        for location, raw in self._messages():
            try:
                records.append(to_record(self.name, raw))
            except Exception as exc:  # a broken message is a failure value, never fatal
                failures.append(RecordFailure(self.name, location, f"{type(exc).__name__}: {exc}",
                                              raw[:2000].decode("utf-8", "replace")))
        return records, failures

    def list_ids(self) -> set[str]:
        return {r.source_id for r in self._scan()[0]}

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        self.check()
        state = self._state()
        previous = dict(cursor or {})
        if previous.get("files") == state:
            return
        records, failures = self._scan()
        ids = sorted({r.source_id for r in records})
        gone = sorted(set(previous.get("ids", [])) - set(ids))
        tombstones = [Tombstone(self.name, i) for i in gone]
        groups = list(chunked(records, BATCH_SIZE)) or [[]]
        for index, group in enumerate(groups):
            last = index == len(groups) - 1
            yield Batch(records=group, tombstones=tombstones if last else [],
                        failures=failures if last else [],
                        cursor={"files": state, "ids": ids} if last else None)


class MboxConnector(_MailConnector):
    """An mbox file, or a directory of ``*.mbox`` files."""

    kind: ClassVar[str] = "mbox"

    def _paths(self) -> list[Path]:
        return sorted(self.root.glob("*.mbox")) if self.root.is_dir() else [self.root]

    def check(self) -> None:
        if not self.root.exists():
            raise ConfigError(f"mbox path {str(self.root)!r} does not exist",
                              details=[{"field": "config.path"}])

    def _state(self) -> dict[str, list[int]]:
        return {str(p): file_state(p) for p in self._paths()}

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        for path in self._paths():
            box = mailbox.mbox(str(path), create=False)
            try:
                for key in box.iterkeys():
                    yield f"{path.name}#{key}", box.get_bytes(key)
            finally:
                box.close()


class MaildirConnector(_MailConnector):
    """A Maildir directory (``cur/`` and ``new/``)."""

    kind: ClassVar[str] = "maildir"

    def check(self) -> None:
        if not (self.root / "cur").is_dir() and not (self.root / "new").is_dir():
            raise ConfigError(f"{str(self.root)!r} is not a Maildir (no cur/ or new/)",
                              details=[{"field": "config.path"}])

    def _state(self) -> dict[str, list[int]]:
        return {f"{sub}/{p.name}": file_state(p) for sub in ("cur", "new")
                for p in sorted((self.root / sub).glob("*")) if p.is_file()}

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        box = mailbox.Maildir(str(self.root), create=False)
        for key in box.iterkeys():
            yield key, box.get_bytes(key)
