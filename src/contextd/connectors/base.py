"""The connector contract and helpers shared by snapshot-style sources.

A connector pulls since a cursor and yields :class:`~contextd.core.types.Batch` values:
records, tombstones and failures (failures are values, never exceptions that end the
run), each batch carrying the cursor to checkpoint after it. ``list_ids`` lists what still
exists at the source so the runner can reconcile deletions the source never reported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone

DEFAULT_BATCH_SIZE = 100


class ConnectorConfig(BaseModel):
    """Base of every connector config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=10_000,
        description="Records per batch; the cursor is checkpointed after each batch.")


class Connector(Protocol):
    """What every source kind implements; built as ``cls(name, cls.Config(...))``."""

    kind: ClassVar[str]
    Config: ClassVar[type[ConnectorConfig]]
    name: str

    def check(self) -> None:
        """Raise ConfigError / SourceError with a clear message if the source is unusable."""
        ...

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Yield batches of what changed since ``cursor`` (everything when None)."""
        ...

    def list_ids(self) -> set[str]:
        """Source ids that exist at the source right now."""
        ...


@runtime_checkable
class LocalCheck(Protocol):
    """Optional: checks that need no pull and no network (paths exist, have the right type).

    Run on create and on every config change, so a connector that cannot work is a 422
    and is never saved.
    """

    def check_local(self) -> None:
        """Raise ConfigError naming the field (``config.path``) if the config cannot work."""
        ...


def file_state(path: Path) -> list[int]:
    """What tells a file changed without reading it: mtime in ns and size."""
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]


def to_utc(value: Any) -> datetime:
    """Parse a date/datetime (or ISO string) into an aware UTC datetime; ValueError if not.

    Naive values are taken as UTC: exports and front matter rarely carry a zone, and a
    stable reading beats the machine's local zone.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a date: {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# IMAP response codes (RFC 5530 and RFC 3501): the only part of a server's reply kept.
IMAP_RESPONSE_CODES = frozenset({
    "ALERT", "PARSE", "TRYCREATE", "UNAVAILABLE", "AUTHENTICATIONFAILED",
    "AUTHORIZATIONFAILED", "EXPIRED", "PRIVACYREQUIRED", "CONTACTADMIN", "NOPERM", "INUSE",
    "EXPUNGEISSUE", "CORRUPTION", "SERVERBUG", "CLIENTBUG", "CANNOT", "LIMIT", "OVERQUOTA",
    "ALREADYEXISTS", "NONEXISTENT"})
_BRACKETED = re.compile(r"\[([A-Z]+)[\] ]")


def reply_summary(reply: object) -> str:
    """What a source's reply may add to a stored error message: a documented response code
    (`` [AUTHENTICATIONFAILED]``), else nothing. Reply text never reaches ``last_error``
    or quarantine: a connector pointed at another service would otherwise show that
    service's answers to whoever reads the errors."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    codes = [c for c in _BRACKETED.findall(text) if c in IMAP_RESPONSE_CODES]
    return f" [{codes[0]}]" if codes else ""


def error_text(exc: BaseException) -> str:
    """The message a RecordFailure carries: the exception's type and text."""
    return f"{type(exc).__name__}: {exc}"


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class FileScan:
    """What one source file held: its records, its failures, and every id it names.

    ``ids`` also holds ids of items that failed to map, so a broken item never turns
    into a deletion of the version already served.
    """

    records: list[SourceRecord] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


def pull_files(source: str, cursor: Mapping[str, Any] | None, states: Mapping[str, list[int]],
               scan: Callable[[str], FileScan], *, batch_size: int,
               rescan_all: Callable[[set[str]], bool] = lambda changed: False,
               ) -> Iterator[Batch]:
    """Incremental pull for sources made of a few files, each holding many items.

    Only files whose ``[mtime_ns, size]`` changed are scanned. The cursor is
    ``{"files": {key: state}, "ids": [every id], "file_ids": {key: [ids]}}``: ids of
    unchanged files carry over, and ids that are in no file any more become tombstones.
    A file that cannot be read at all is one failure; its previous ids are kept (no
    tombstones) and its previous state too, so the next pull retries it. Records go out
    in batches of ``batch_size``; the cursor rides on the last batch only, after the
    tombstones, so a crash mid-pull simply repeats the pull.
    """
    previous = dict(cursor or {})
    prev_files: dict[str, Any] = dict(previous.get("files") or {})
    prev_ids = set(previous.get("ids") or [])
    prev_file_ids = previous.get("file_ids")
    attributable = isinstance(prev_file_ids, dict)  # older cursors lack the per-file map
    known: dict[str, list[str]] = dict(prev_file_ids) if isinstance(prev_file_ids, dict) else {}
    changed = {key for key, state in states.items() if prev_files.get(key) != state}
    removed = set(prev_files) - set(states)
    if cursor is not None and attributable and not changed and not removed:
        return
    if cursor is None or not attributable or rescan_all(changed):
        changed = set(states)
    new_states = dict(states)
    file_ids = {key: list(known.get(key, [])) for key in states if key not in changed}
    unreadable: list[str] = []
    failures: list[RecordFailure] = []
    pending: list[SourceRecord] = []
    for key in sorted(changed):
        try:
            found = scan(key)
        except Exception as exc:  # an unreadable file is one failure, never a mass delete
            failures.append(RecordFailure(source, key, error_text(exc)))
            unreadable.append(key)
            if key in prev_files:
                new_states[key] = prev_files[key]
            else:
                del new_states[key]
            continue
        file_ids[key] = sorted(found.ids)
        failures.extend(found.failures)
        for record in found.records:
            pending.append(record)
            if len(pending) >= batch_size:
                yield Batch(records=pending)
                pending = []
    for key in unreadable:
        # Without a per-file map, every old id not seen elsewhere may live in this file.
        seen = set().union(*(set(v) for k, v in file_ids.items() if k not in unreadable))
        file_ids[key] = sorted(set(known.get(key, [])) if attributable else prev_ids - seen)
    all_ids = set().union(*(set(v) for v in file_ids.values()))
    tombstones = [Tombstone(source, i) for i in sorted(prev_ids - all_ids)]
    yield Batch(records=pending, tombstones=tombstones, failures=failures,
                cursor={"files": new_states, "ids": sorted(all_ids), "file_ids": file_ids})
