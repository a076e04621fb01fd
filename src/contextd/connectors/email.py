"""``mbox`` and ``maildir``: one record per message, ACL = sender and every recipient.

The thread id is the first Message-ID in References (else In-Reply-To, else the message's
own id). It goes in ``fields["thread_id"]`` and in ``entities`` as ``thread:<id>``, while
``entity_key`` is the message's own ``email:<id>``: retrieval treats records sharing an
entity_key as versions and ranks older ones below newer ones, and a reply does not
supersede the message it answers.
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

from contextd.connectors.base import (
    ConnectorConfig,
    FileScan,
    error_text,
    file_state,
    pull_files,
    sha256_hex,
)
from contextd.core.errors import ConfigError, SourceError
from contextd.core.types import Batch, RecordFailure, SourceRecord

_PARSER = BytesParser(policy=policy.default)


class MailConfig(ConnectorConfig):
    path: str = Field(min_length=1,
        description="An mbox file or a directory of ``*.mbox`` files (mbox), or a Maildir "
                    "directory (maildir).")


def _ids(value: object) -> list[str]:
    """Message-IDs in a header value, without angle brackets."""
    return [part.strip("<>") for part in str(value or "").split() if part.strip("<>")]


def message_id(raw: bytes, message: EmailMessage | None = None) -> str:
    """The Message-ID, or the sha256 of the raw bytes when the message has none."""
    header = (message if message is not None
              else _PARSER.parsebytes(raw, headersonly=True)).get("Message-ID")
    return (_ids(header) or [sha256_hex(raw)])[0]


def addresses(message: EmailMessage, *headers: str) -> list[str]:
    """Lower-cased addresses of ``headers``, in order, without duplicates."""
    values = [str(v) for h in headers for v in message.get_all(h, [])]
    found = [addr.lower() for _, addr in getaddresses(values) if "@" in addr]
    return list(dict.fromkeys(found))


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
    own_id = message_id(raw, message)
    date_header = message.get("Date")
    if not date_header:
        raise ValueError("message has no Date header")
    try:
        sent_at = parsedate_to_datetime(str(date_header))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unparseable Date header {str(date_header)!r}") from exc
    # A naive result means "-0000" (zone unknown): RFC 5322 says the time is UTC then.
    sent_at = sent_at.replace(tzinfo=UTC) if sent_at.tzinfo is None else sent_at.astimezone(UTC)
    sender, to, cc = addresses(message, "From"), addresses(message, "To"), addresses(message, "Cc")
    if not sender and not to and not cc:
        raise ValueError("message has no sender or recipient address")
    references = _ids(message.get("References"))
    in_reply_to = _ids(message.get("In-Reply-To"))
    thread_id = (references or in_reply_to or [own_id])[0]
    header = (f"From: {message.get('From', '')}\nTo: {message.get('To', '')}\n"
              + (f"Cc: {message.get('Cc')}\n" if message.get("Cc") else "")
              + f"Date: {date_header}\n\n")
    return SourceRecord(
        source=source, source_id=own_id, kind="email",
        title=str(message.get("Subject") or "(no subject)"),
        text=header + body_text(message), updated_at=sent_at, updated_at_source="email_date",
        acl=tuple(sorted({f"user:{a}" for a in sender + to + cc})),
        uri=f"mid:{own_id}", author=sender[0] if sender else "",
        entity_key=f"email:{own_id}", entities=(f"thread:{thread_id}",),
        fields={"from": sender[0] if sender else "", "to": to, "cc": cc,
                "thread_id": thread_id, "message_id": own_id,
                "in_reply_to": in_reply_to[0] if in_reply_to else None},
    )


def scan_messages(source: str, messages: Iterator[tuple[str, bytes]]) -> FileScan:
    """Map every (location, raw) message; a broken one is a failure named by its id."""
    found = FileScan()
    for location, raw in messages:
        try:
            ident = message_id(raw)
        except Exception:  # headers too broken to name it: use where it sits
            ident = location
        found.ids.add(ident)
        try:
            found.records.append(to_record(source, raw))
        except Exception as exc:  # a broken message is a failure value, never fatal
            found.failures.append(RecordFailure(source, ident, error_text(exc),
                                                raw[:2000].decode("utf-8", "replace")))
    return found


class _MailConnector:
    """Shared pull logic: only files that changed since the cursor are re-read."""

    kind: ClassVar[str]
    Config: ClassVar[type[ConnectorConfig]] = MailConfig

    def __init__(self, name: str, config: MailConfig) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path).expanduser()

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("path", "path", self.config.path)]

    def check(self) -> None:
        raise NotImplementedError

    def check_local(self) -> None:
        """The path holds mail of this kind (checked on create, before anything is saved)."""
        self.check()

    def _files(self) -> dict[str, Path]:
        """Cursor key -> file holding messages."""
        raise NotImplementedError

    def _messages(self, key: str, path: Path) -> Iterator[tuple[str, bytes]]:
        """(location, raw bytes) of every message in one file."""
        raise NotImplementedError

    def list_ids(self) -> set[str]:
        """Message ids from headers only; an unreadable file raises rather than hide ids."""
        self.check()
        ids: set[str] = set()
        for key, path in self._files().items():
            try:
                ids.update(message_id(raw) for _, raw in self._messages(key, path))
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc}") from exc
        return ids

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        self.check()
        files = self._files()
        states = {key: file_state(path) for key, path in files.items()}
        yield from pull_files(
            self.name, cursor, states,
            lambda key: scan_messages(self.name, self._messages(key, files[key])),
            batch_size=self.config.batch_size)


class MboxConnector(_MailConnector):
    """An mbox file, or a directory of ``*.mbox`` files (cursor keys are their paths)."""

    kind: ClassVar[str] = "mbox"

    def check(self) -> None:
        if not self.root.exists():
            raise ConfigError(f"mbox path {str(self.root)!r} does not exist",
                              details=[{"field": "config.path", "message": "does not exist"}])
        if self.root.is_dir() and not any(self.root.glob("*.mbox")):
            raise ConfigError(f"directory {str(self.root)!r} holds no *.mbox files",
                              details=[{"field": "config.path", "message": "no *.mbox files"}])

    def _files(self) -> dict[str, Path]:
        paths = sorted(self.root.glob("*.mbox")) if self.root.is_dir() else [self.root]
        return {str(p): p for p in paths}

    def _messages(self, key: str, path: Path) -> Iterator[tuple[str, bytes]]:
        box = mailbox.mbox(str(path), create=False)
        try:
            for number, msg_key in enumerate(box.iterkeys()):
                yield f"{path.name}#{number}", box.get_bytes(msg_key)
        finally:
            box.close()


class MaildirConnector(_MailConnector):
    """A Maildir directory: one message per file in ``cur/`` and ``new/``.

Files are listed and read directly (as ``mailbox.Maildir`` does) because the cursor is
per file and a file's name is what tells which message changed.

    Cursor keys are ``cur/<file>`` and ``new/<file>``; a message moving from ``new/`` to
    ``cur/`` or changing flags is re-read under its new name, and keeps its Message-ID.
    """

    kind: ClassVar[str] = "maildir"

    def check(self) -> None:
        if not (self.root / "cur").is_dir() and not (self.root / "new").is_dir():
            raise ConfigError(f"{str(self.root)!r} is not a Maildir (no cur/ or new/)",
                              details=[{"field": "config.path", "message": "not a Maildir"}])

    def _files(self) -> dict[str, Path]:
        # Same rules as mailbox.Maildir: files in cur/ and new/, dot files skipped.
        return {f"{sub}/{p.name}": p for sub in ("cur", "new") if (self.root / sub).is_dir()
                for p in sorted((self.root / sub).iterdir())
                if p.is_file() and not p.name.startswith(".")}

    def _messages(self, key: str, path: Path) -> Iterator[tuple[str, bytes]]:
        yield key, path.read_bytes()
