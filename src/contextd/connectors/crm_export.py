"""``crm_export``: accounts, contacts, deals and notes exported as JSON arrays or CSV.

ACL = ``user:<owner>`` + ``group:<team>``. A row without owner and team fails closed: it is
a failure value, never accidentally public. Each record names its entity (``deal:D-1``)
and the entities it relates to (its account), so facts and supersession can follow them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from contextd.connectors.base import ConnectorConfig, chunked, file_state, to_utc
from contextd.core.errors import ConfigError
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone

OBJECT_TYPES = {"accounts": "account", "contacts": "contact", "deals": "deal", "notes": "note"}
BATCH_SIZE = 200


class CrmExportConfig(ConnectorConfig):
    path: str = Field(min_length=1)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` array or a ``.csv`` file with a header."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a JSON array")
        return [row if isinstance(row, dict) else {"_invalid": row} for row in data]
    with path.open(encoding="utf-8", newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def _render(obj_type: str, row: Mapping[str, Any], accounts: Mapping[str, str]) -> tuple[str, str]:
    account = accounts.get(str(row.get("account_id", "")), str(row.get("account_id", "")))
    skip = {"id", "owner", "team", "updated_at", "account_id", "body", "name", "title"}
    details = ". ".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in row.items()
                        if k not in skip and v not in (None, ""))
    owner = f"Owner: {row.get('owner')} ({row.get('team')} team)."
    if obj_type == "account":
        return f"Account: {row.get('name')}", f"Account {row.get('name')}. {details}. {owner}"
    if obj_type == "contact":
        return (f"Contact: {row.get('name')} ({account})",
                f"Contact {row.get('name')} at {account}. {details}. {owner}")
    if obj_type == "deal":
        return (f"Deal: {row.get('name')} ({account})",
                f"Deal {row.get('name')} with {account}. {details}. {owner}")
    return (f"Note on {account}", f"{row.get('body') or ''}\n\n{details}. {owner}")


def to_record(source: str, obj_type: str, row: Mapping[str, Any],
              accounts: Mapping[str, str]) -> SourceRecord:
    """Map one CRM row; ValueError for a row that cannot be trusted."""
    if "_invalid" in row or not str(row.get("id") or "").strip():
        raise ValueError("row has no id")
    owner, team = str(row.get("owner") or "").strip(), str(row.get("team") or "").strip()
    if not owner and not team:
        raise ValueError("row has neither owner nor team: refusing to guess its ACL")
    acl = tuple(p for p in (f"user:{owner}" if owner else "", f"group:{team}" if team else "")
                if p)
    key = f"{obj_type}:{row['id']}"
    related = []
    if row.get("account_id"):
        related.append(f"account:{row['account_id']}")
    if row.get("deal_id"):
        related.append(f"deal:{row['deal_id']}")
    title, text = _render(obj_type, row, accounts)
    return SourceRecord(
        source=source, source_id=key, kind="crm", title=title, text=text,
        updated_at=to_utc(row.get("updated_at")), acl=acl, uri=f"crm://{source}/{key}",
        author=owner, entity_key=key, entities=tuple(related),
        fields={"type": obj_type, **{k: v for k, v in row.items()}},
    )


class CrmExportConnector:
    """A directory with ``accounts``, ``contacts``, ``deals``, ``notes`` (.json or .csv)."""

    kind: ClassVar[str] = "crm_export"
    Config: ClassVar[type[ConnectorConfig]] = CrmExportConfig

    def __init__(self, name: str, config: CrmExportConfig) -> None:
        self.name = name
        self.root = Path(config.path).expanduser()

    def _files(self) -> dict[str, Path]:
        found = {}
        for stem in OBJECT_TYPES:
            for suffix in (".json", ".csv"):
                if (self.root / f"{stem}{suffix}").is_file():
                    found[stem] = self.root / f"{stem}{suffix}"
        return found

    def check(self) -> None:
        if not self.root.is_dir() or not self._files():
            raise ConfigError(f"{str(self.root)!r} holds no accounts/contacts/deals/notes "
                              ".json or .csv files", details=[{"field": "config.path"}])

    def _scan(self) -> tuple[list[SourceRecord], list[RecordFailure]]:
        files = self._files()
        rows = {stem: read_rows(path) for stem, path in files.items()}
        accounts = {str(r.get("id")): str(r.get("name")) for r in rows.get("accounts", [])}
        records, failures = [], []
        for stem, table in rows.items():
            for number, row in enumerate(table, 1):
                try:
                    records.append(to_record(self.name, OBJECT_TYPES[stem], row, accounts))
                except Exception as exc:  # a malformed row is a failure value
                    failures.append(RecordFailure(
                        self.name, f"{stem}:{row.get('id') or f'row{number}'}",
                        f"{type(exc).__name__}: {exc}", json.dumps(row, default=str)[:2000]))
        return records, failures

    def list_ids(self) -> set[str]:
        self.check()
        return {r.source_id for r in self._scan()[0]}

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        self.check()
        state = {p.name: file_state(p) for p in self._files().values()}
        previous = dict(cursor or {})
        if previous.get("files") == state:
            return
        records, failures = self._scan()
        ids = sorted({r.source_id for r in records})
        tombstones = [Tombstone(self.name, i)
                      for i in sorted(set(previous.get("ids", [])) - set(ids))]
        groups = list(chunked(records, BATCH_SIZE)) or [[]]
        for index, group in enumerate(groups):
            last = index == len(groups) - 1
            yield Batch(records=group, tombstones=tombstones if last else [],
                        failures=failures if last else [],
                        cursor={"files": state, "ids": ids} if last else None)
