"""``crm_export``: accounts, contacts, deals and notes exported as JSON arrays or CSV.

ACL = ``user:<owner>`` + ``group:<team>``. A row with neither fails closed: it is a failure
value, never accidentally public. Each record names its entity (``deal:D-1``) and the
entities it relates to (its account, a note's deal), so facts can follow them.

Contacts, deals and notes show their account's name (search matches the words people
use) only when every principal that can read them can also read the account: the
account is public, or its ACL holds every principal of theirs. Otherwise they show the
account id, so a record never carries text its readers could not read at the source.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from contextd.connectors.base import (
    ConnectorConfig,
    FileScan,
    error_text,
    file_state,
    pull_files,
    to_utc,
)
from contextd.core.errors import ConfigError, SourceError
from contextd.core.types import PUBLIC, Batch, RecordFailure, SourceRecord

OBJECT_TYPES = {"accounts": "account", "contacts": "contact", "deals": "deal", "notes": "note"}
SUFFIXES = (".json", ".csv")
_NOT_DETAILS = {"id", "owner", "team", "updated_at", "account_id", "deal_id", "body", "name",
                "title"}


class CrmExportConfig(ConnectorConfig):
    path: str = Field(min_length=1,
        description="A directory holding accounts, contacts, deals and notes as .json or .csv.")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` array of objects or a ``.csv`` file with a header row."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a JSON array of objects")
        return [row if isinstance(row, dict) else {"_invalid": row} for row in data]
    with path.open(encoding="utf-8", newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def _sentence(*parts: str) -> str:
    return " ".join(p.rstrip(".") + "." for p in parts if p)


def row_acl(row: Mapping[str, Any]) -> tuple[str, ...]:
    """``user:<owner>`` + ``group:<team>`` of a row (empty when it names neither)."""
    owner, team = str(row.get("owner") or "").strip(), str(row.get("team") or "").strip()
    return tuple(p for p in (f"user:{owner}" if owner else "", f"group:{team}" if team else "")
                 if p)


def covers(source_acl: Sequence[str], reader_acl: Sequence[str]) -> bool:
    """Can everyone who reads a record with ``reader_acl`` read one with ``source_acl``?"""
    return PUBLIC in source_acl or (bool(reader_acl) and set(reader_acl) <= set(source_acl))


@dataclass(frozen=True)
class Account:
    """What other records may borrow from an account: its name, under its ACL."""

    name: str
    acl: tuple[str, ...]


def render(obj_type: str, row: Mapping[str, Any],
           accounts: Mapping[str, Account]) -> tuple[str, str]:
    """(title, text): a readable rendering, so search matches the words people use. The
    account's name appears only where the account's ACL covers this row's readers."""
    account_id = str(row.get("account_id") or "")
    known = accounts.get(account_id)
    account = known.name if known and covers(known.acl, row_acl(row)) else account_id
    name = str(row.get("name") or row.get("title") or row.get("id"))
    details = _sentence(*(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in row.items()
                          if k not in _NOT_DETAILS and v not in (None, "")))
    owner = f"Owner: {row.get('owner') or 'none'} ({row.get('team') or 'no'} team)."
    at = f" ({account})" if account else ""
    if obj_type == "account":
        return f"Account: {name}", _sentence(f"Account {name}", details, owner)
    if obj_type == "contact":
        return (f"Contact: {name}{at}",
                _sentence(f"Contact {name}" + (f" at {account}" if account else ""), details,
                          owner))
    if obj_type == "deal":
        return (f"Deal: {name}{at}",
                _sentence(f"Deal {name}" + (f" with {account}" if account else ""), details,
                          owner))
    deal = f" (deal {row['deal_id']})" if row.get("deal_id") else ""
    return (f"Note on {account or name}",
            f"{row.get('body') or ''}\n\n" + _sentence(f"Note on {account}{deal}", details, owner))


def to_record(source: str, obj_type: str, row: Mapping[str, Any],
              accounts: Mapping[str, Account]) -> SourceRecord:
    """Map one CRM row; ValueError for a row that cannot be trusted."""
    if "_invalid" in row:
        raise ValueError(f"row is not an object: {row['_invalid']!r}")
    ident = str(row.get("id") or "").strip()
    if not ident:
        raise ValueError("row has no id")
    owner = str(row.get("owner") or "").strip()
    acl = row_acl(row)
    if not acl:
        raise ValueError("row has neither owner nor team: refusing to guess its ACL")
    key = f"{obj_type}:{ident}"
    related = [f"{kind}:{row[column]}" for kind, column in (("account", "account_id"),
                                                            ("deal", "deal_id"))
               if str(row.get(column) or "").strip()]
    title, text = render(obj_type, row, accounts)
    return SourceRecord(
        source=source, source_id=key, kind="crm", title=title, text=text,
        updated_at=to_utc(row.get("updated_at")), updated_at_source="crm_updated_at",
        acl=acl, uri=f"crm://{source}/{key}",
        author=owner, entity_key=key, entities=tuple(related), fields=dict(row),
    )


def row_id(obj_type: str, row: Mapping[str, Any]) -> str | None:
    ident = str(row.get("id") or "").strip() if "_invalid" not in row else ""
    return f"{obj_type}:{ident}" if ident else None


class CrmExportConnector:
    """A directory with ``accounts``, ``contacts``, ``deals``, ``notes`` (.json or .csv).

    Cursor keys are file names. Only changed files are re-read, except that a change to
    the accounts file re-reads everything, because account names appear in the titles of
    contacts, deals and notes.
    """

    kind: ClassVar[str] = "crm_export"
    Config: ClassVar[type[ConnectorConfig]] = CrmExportConfig

    def __init__(self, name: str, config: CrmExportConfig) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path).expanduser()

    def _files(self) -> dict[str, Path]:
        """File name -> path of each object type present."""
        return {f"{stem}{suffix}": self.root / f"{stem}{suffix}"
                for stem in OBJECT_TYPES for suffix in SUFFIXES
                if (self.root / f"{stem}{suffix}").is_file()}

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("path", "path", self.config.path)]

    def check_local(self) -> None:
        """The path is a directory of export files (checked on create, before saving)."""
        self.check()

    def check(self) -> None:
        files = self._files() if self.root.is_dir() else {}
        if not files:
            raise ConfigError(f"{str(self.root)!r} holds no accounts/contacts/deals/notes "
                              ".json or .csv files",
                              details=[{"field": "config.path", "message": "no CRM files"}])
        both = sorted(stem for stem in OBJECT_TYPES
                      if all(f"{stem}{s}" in files for s in SUFFIXES))
        if both:
            raise ConfigError(f"{str(self.root)!r} has both .json and .csv for {both}: keep one",
                              details=[{"field": "config.path", "message": "ambiguous files"}])

    def _accounts(self, files: Mapping[str, Path]) -> dict[str, Account]:
        """Account id -> name and ACL, for titles; empty if the accounts file is unreadable."""
        path = next((p for k, p in files.items() if k.startswith("accounts.")), None)
        try:
            rows = read_rows(path) if path else []
        except (OSError, ValueError):
            return {}  # the accounts file itself reports the failure
        return {str(r.get("id")): Account(str(r.get("name")), row_acl(r))
                for r in rows if r.get("id")}

    def scan(self, key: str, path: Path, accounts: Mapping[str, Account]) -> FileScan:
        """Every row of one file; a malformed row is a failure and the rest continue."""
        obj_type = OBJECT_TYPES[Path(key).stem]
        found = FileScan()
        for number, row in enumerate(read_rows(path), 1):
            ident = row_id(obj_type, row)
            if ident:
                found.ids.add(ident)
            try:
                found.records.append(to_record(self.name, obj_type, row, accounts))
            except Exception as exc:  # a malformed row is a failure value
                found.failures.append(RecordFailure(
                    self.name, ident or f"{key}#row{number}", error_text(exc),
                    json.dumps(row, default=str)[:2000]))
        return found

    def list_ids(self) -> set[str]:
        """Ids of rows that name one; an unreadable file raises rather than hide its ids."""
        self.check()
        ids: set[str] = set()
        for key, path in self._files().items():
            try:
                rows = read_rows(path)
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot read {path}: {exc}") from exc
            ids.update(i for row in rows if (i := row_id(OBJECT_TYPES[Path(key).stem], row)))
        return ids

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        self.check()
        files = self._files()
        states = {key: file_state(path) for key, path in files.items()}
        accounts = self._accounts(files)
        yield from pull_files(
            self.name, cursor, states, lambda key: self.scan(key, files[key], accounts),
            batch_size=self.config.batch_size,
            rescan_all=lambda changed: any(k.startswith("accounts.") for k in changed))
