"""``imap``: mail folders on an IMAP server, incremental by UIDVALIDITY + UID per folder.

Each pull selects every folder read-only, lists its UIDs (``UID SEARCH ALL``) and fetches
only UIDs above the folder's last UID plus those that failed before. Messages map exactly
as ``mbox``/``maildir`` do (:func:`contextd.connectors.email.to_record`): the Message-ID is
the source id, ACL = ``user:<address>`` of the sender and every recipient. A UID that
disappeared was expunged: its message becomes a tombstone unless another configured folder
still holds it. A changed UIDVALIDITY makes the folder's old UIDs meaningless, so the folder
is read again in full (unchanged messages are skipped by their hash, not re-embedded).

Cursor: ``{"folders": {name: {"uidvalidity", "last_uid", "ids": {uid: source_id},
"retry": [uids]}}, "orphans": [source ids to check for deletion]}``, checkpointed after
every fetched batch; expunged UIDs are pruned only in the last batch, with the tombstones,
so a crash never forgets a deletion.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contextd.connectors.base import ConnectorConfig, chunked, error_text, reply_summary
from contextd.connectors.email import message_id, to_record
from contextd.connectors.limits import OutboundPolicy
from contextd.core.errors import ConfigError, SourceAuthError, SourceError, TransientSourceError
from contextd.core.telemetry import SOURCE_HTTP_RETRIES
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone

log = logging.getLogger(__name__)

_UID = re.compile(rb"UID (\d+)")
_FETCH_CHUNK = 500  # UIDs per FETCH when only headers are read


class ImapConfig(ConnectorConfig):
    # The password is only ever sent to this server: changing it needs the password again.
    endpoint_fields: ClassVar[tuple[str, ...]] = ("host", "port", "security")

    host: str = Field(min_length=1,
        description="The IMAP server.")
    port: int | None = Field(default=None, ge=1, le=65535,
        description="Its port; unset: 993 for tls, 143 otherwise.")
    security: Literal["tls", "starttls", "none"] = Field("tls",
        description="tls (implicit), starttls, or none (trusted networks and tests only).")
    user: str = Field(min_length=1,
        description="The mailbox login.")
    password: SecretStr = Field(min_length=1,
        description="Its password.")
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1,
        description="Folders to read.")
    ca_file: str | None = Field(None,
        description="A private CA or self-signed server certificate (PEM).")
    verify_tls: bool = Field(True,
        description="Check the server certificate.")
    timeout_seconds: float = Field(default=30.0, gt=0, le=600,
        description="Seconds to wait on the server per operation.")
    connect_attempts: int = Field(default=4, ge=1, le=10,
        description="Connection attempts before a run fails.")


def quote(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string (imaplib sends arguments verbatim)."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: Any) -> str:
    parts = data if isinstance(data, list) else [data]
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)
                    for p in parts if p is not None)


class ImapConnector:
    """Mail folders on an IMAP server, incremental by UID within each folder's UIDVALIDITY."""

    kind: ClassVar[str] = "imap"
    Config: ClassVar[type[ConnectorConfig]] = ImapConfig

    def __init__(self, name: str, config: ImapConfig, *,
                 outbound: OutboundPolicy | None = None) -> None:
        self.name = name
        self.config = config
        default_port = {"tls": 993, "starttls": 143, "none": 143}[config.security]
        self.port = config.port or default_port
        self.outbound = outbound or OutboundPolicy()

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("host", "host", (self.config.host, self.port))]

    def check_local(self) -> None:
        """The CA file, if named, exists (the server itself is only reached by a run)."""
        ca_file = self.config.ca_file
        if ca_file is not None and not Path(ca_file).expanduser().is_file():
            raise ConfigError(f"ca_file {ca_file!r} does not exist or is not a file",
                              details=[{"field": "config.ca_file", "message": "not a file"}])

    # --- session -------------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_file)
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _open(self) -> imaplib.IMAP4:
        """Connect and log in; a refused login is SourceAuthError, never retried."""
        cfg = self.config
        self.outbound.connectable(cfg.host, self.port, source=self.name)
        try:
            if cfg.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    cfg.host, self.port, ssl_context=self._tls(), timeout=cfg.timeout_seconds)
            else:
                conn = imaplib.IMAP4(cfg.host, self.port, timeout=cfg.timeout_seconds)
                if cfg.security == "starttls":
                    conn.starttls(ssl_context=self._tls())
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(f"{self.name}: TLS certificate of {cfg.host}:{self.port} not "
                              f"trusted ({exc.verify_message}); set ca_file") from exc
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise TransientSourceError(f"{self.name}: cannot connect to {cfg.host}:"
                                       f"{self.port}: {exc}") from exc
        except imaplib.IMAP4.error as exc:  # e.g. STARTTLS not offered
            raise SourceError(f"{self.name}: {cfg.host}:{self.port}: the server refused "
                              f"the session{reply_summary(exc)}") from exc
        try:
            conn.login(cfg.user, cfg.password.get_secret_value())
        except imaplib.IMAP4.abort as exc:
            conn.shutdown()
            raise TransientSourceError(f"{self.name}: connection lost at login") from exc
        except imaplib.IMAP4.error as exc:
            conn.shutdown()
            raise SourceAuthError(f"{self.name}: login as {cfg.user!r} on {cfg.host} "
                                  f"rejected (not retried){reply_summary(exc)}") from exc
        return conn

    @contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in connection; connection failures retried with backoff and jitter."""
        def count_retry(state: Any) -> None:
            SOURCE_HTTP_RETRIES.labels(self.name, "connection").inc()
            log.warning("imap connect retried", extra={
                "event": "source_retry", "connector": self.name,
                "attempt": state.attempt_number,
                "error": str(state.outcome.exception() if state.outcome else "")})

        conn = Retrying(retry=retry_if_exception_type(TransientSourceError),
                        stop=stop_after_attempt(self.config.connect_attempts),
                        wait=wait_exponential_jitter(multiplier=0.5, max=10),
                        before_sleep=count_retry, reraise=True)(self._open)
        try:
            yield conn
        except (imaplib.IMAP4.abort, OSError) as exc:
            raise TransientSourceError(f"{self.name}: connection lost "
                                       f"({type(exc).__name__})") from exc
        except imaplib.IMAP4.error as exc:  # the server answered BAD
            raise SourceError(f"{self.name}: IMAP command refused"
                              f"{reply_summary(exc)}") from exc
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def _select(self, conn: imaplib.IMAP4, folder: str) -> int:
        """Select ``folder`` read-only; its UIDVALIDITY. A missing folder is a ConfigError."""
        status, data = conn.select(quote(folder), readonly=True)
        if status != "OK":
            raise ConfigError(f"{self.name}: cannot open folder {folder!r}"
                              f"{reply_summary(_text(data))}",
                              details=[{"field": "config.folders",
                                        "message": f"no folder {folder!r}"}])
        _, values = conn.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise SourceError(f"{self.name}: server sent no UIDVALIDITY for {folder!r}")
        return int(values[0])

    @staticmethod
    def _uids(conn: imaplib.IMAP4) -> set[int]:
        status, data = conn.uid("SEARCH", "ALL")
        if status != "OK":
            raise SourceError(f"UID SEARCH failed{reply_summary(_text(data))}")
        return {int(u) for u in b" ".join(d for d in data if d).split()}

    @staticmethod
    def _fetch(conn: imaplib.IMAP4, uids: list[int], item: str) -> dict[int, bytes]:
        """UID -> fetched bytes of ``item`` for some UIDs (gone ones are simply absent)."""
        status, data = conn.uid("FETCH", ",".join(map(str, uids)), f"(UID {item})")
        if status != "OK":
            raise SourceError(f"UID FETCH failed{reply_summary(_text(data))}")
        found: dict[int, bytes] = {}
        for part in data:
            if isinstance(part, tuple) and (match := _UID.search(part[0])):
                found[int(match.group(1))] = part[1]
        return found

    def check(self) -> None:
        with self._session() as conn:
            for folder in self.config.folders:
                self._select(conn, folder)

    # --- pull ----------------------------------------------------------------------------

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        previous: dict[str, Any] = dict((cursor or {}).get("folders") or {})
        orphans: set[str] = set((cursor or {}).get("orphans") or [])
        for folder, old in previous.items():
            if folder not in self.config.folders:  # dropped from the config
                orphans.update(old.get("ids", {}).values())
        state: dict[str, dict[str, Any]] = {}

        def checkpoint() -> dict[str, Any]:
            folders = {f: previous[f] for f in self.config.folders
                       if f in previous and f not in state}
            folders.update({f: {**s, "ids": dict(s["ids"]), "retry": sorted(s["retry"])}
                            for f, s in state.items()})
            return {"folders": folders, "orphans": sorted(orphans)}

        expunged: dict[str, set[int]] = {}
        yielded: set[str] = set()
        with self._session() as conn:
            for folder in self.config.folders:
                validity = self._select(conn, folder)
                old = previous.get(folder)
                if old and old.get("uidvalidity") != validity:
                    log.warning("imap uidvalidity changed: folder read again", extra={
                        "event": "imap_uidvalidity_changed", "connector": self.name,
                        "folder": folder, "old": old.get("uidvalidity"), "new": validity})
                    orphans.update(old.get("ids", {}).values())
                    old = None
                old = old or {}
                current = state[folder] = {
                    "uidvalidity": validity, "last_uid": int(old.get("last_uid") or 0),
                    "ids": {int(k): v for k, v in (old.get("ids") or {}).items()},
                    "retry": {int(u) for u in old.get("retry") or []}}
                uids = self._uids(conn)
                todo = sorted(u for u in uids
                              if u > current["last_uid"] or u in current["retry"])
                for part in chunked(todo, self.config.batch_size):
                    records, failures = self._read(conn, folder, part, current)
                    # A copy of a message already read (another folder, a duplicate) is
                    # the same record: yield it once per pull.
                    records = list({r.source_id: r for r in records
                                    if r.source_id not in yielded}.values())
                    yielded.update(r.source_id for r in records)
                    yield Batch(records=records, failures=failures, cursor=checkpoint())
                expunged[folder] = set(current["ids"]) - uids
        gone_ids = set(orphans)
        for folder, uids_gone in expunged.items():
            current = state[folder]
            gone_ids.update(current["ids"].pop(u) for u in uids_gone)
            current["retry"] -= uids_gone
        live = {i for s in state.values() for i in s["ids"].values()}
        orphans.clear()
        yield Batch(tombstones=[Tombstone(self.name, i) for i in sorted(gone_ids - live)],
                    cursor=checkpoint())

    def _read(self, conn: imaplib.IMAP4, folder: str, uids: list[int],
              current: dict[str, Any]) -> tuple[list[SourceRecord], list[RecordFailure]]:
        """Fetch and map some UIDs; a broken message is a failure retried next pull."""
        raw_by_uid = self._fetch(conn, uids, "BODY.PEEK[]")
        records: list[SourceRecord] = []
        failures: list[RecordFailure] = []
        for uid in uids:
            raw = raw_by_uid.get(uid)
            if raw is None:  # expunged between SEARCH and FETCH
                continue
            current["last_uid"] = max(current["last_uid"], uid)
            try:
                ident = message_id(raw)
            except Exception:  # headers too broken to name it
                ident = f"imap:{folder}:{current['uidvalidity']}:{uid}"
            current["ids"][uid] = ident
            try:
                records.append(to_record(self.name, raw))
                current["retry"].discard(uid)
            except Exception as exc:  # a malformed message is a failure value
                failures.append(RecordFailure(self.name, ident, error_text(exc),
                                              raw[:2000].decode("utf-8", "replace")))
                current["retry"].add(uid)
        if records or failures:
            log.debug("imap batch", extra={"event": "imap_batch", "connector": self.name,
                                           "folder": folder, "records": len(records),
                                           "failures": len(failures)})
        return records, failures

    def fetch(self, source_ids: list[str]) -> Batch:
        """Re-read quarantined messages by Message-ID in every folder; gone ones are tombstones.

        The cursor is not touched: the next pull keeps its own retry list.
        """
        records: dict[str, SourceRecord] = {}
        failures: dict[str, RecordFailure] = {}
        with self._session() as conn:
            for folder in self.config.folders:
                validity = self._select(conn, folder)
                uids: set[int] = set()
                for source_id in source_ids:
                    if source_id.startswith("imap:"):
                        where, _, uid = source_id.rpartition(":")
                        if where == f"imap:{folder}:{validity}" and uid.isdigit():
                            uids.add(int(uid))
                    elif source_id not in records:
                        uids.update(self._search_message_id(conn, source_id))
                scratch = {"uidvalidity": validity, "last_uid": 0, "ids": {},
                           "retry": set()}
                for part in chunked(sorted(uids), self.config.batch_size):
                    found, failed = self._read(conn, folder, part, scratch)
                    records.update((r.source_id, r) for r in found)
                    failures.update((f.source_id, f) for f in failed)
        for source_id in records:
            failures.pop(source_id, None)  # read fine from another folder
        gone = [Tombstone(self.name, i) for i in source_ids
                if i not in records and i not in failures]
        return Batch(records=list(records.values()), tombstones=gone,
                     failures=list(failures.values()))

    @staticmethod
    def _search_message_id(conn: imaplib.IMAP4, message_id: str) -> set[int]:
        if not message_id or any(c in message_id for c in '"\\\r\n'):
            return set()
        status, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"<{message_id}>"')
        if status != "OK":
            raise SourceError(f"UID SEARCH failed{reply_summary(_text(data))}")
        return {int(u) for u in b" ".join(d for d in data if d).split()}

    def close(self) -> None:
        """Nothing held between calls: every pull opens and logs out its own session."""

    def list_ids(self) -> set[str]:
        """Source ids in every folder now: Message-ID headers (whole message if it has none)."""
        ids: set[str] = set()
        with self._session() as conn:
            for folder in self.config.folders:
                validity = self._select(conn, folder)
                for part in chunked(sorted(self._uids(conn)), _FETCH_CHUNK):
                    headers = self._fetch(conn, part, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
                    anonymous = [u for u, h in headers.items() if not has_message_id(h)]
                    full = self._fetch(conn, anonymous, "BODY.PEEK[]") if anonymous else {}
                    for uid, header in headers.items():
                        try:
                            ids.add(message_id(full.get(uid, header)))
                        except Exception:  # named by place, exactly as pull names it
                            ids.add(f"imap:{folder}:{validity}:{uid}")
        return ids


def has_message_id(header: bytes) -> bool:
    return bool(re.search(rb"(?im)^message-id:\s*<?[^\s>]+", header))
