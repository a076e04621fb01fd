"""A ``>=`` cursor on a modification timestamp, de-duplicated by id at the boundary.

Querying ``modified > cursor`` loses records that share the cursor's timestamp but were
not yet read (a known failure of peers' Salesforce sources); querying ``>=`` re-reads
them. The watermark remembers which ids it already took at exactly ``since``, so the
re-read boundary is skipped instead of counted twice.

A source may also make a change visible after changes with later timestamps (a
transaction that commits late, a search index that lags), so the persisted mark is held
back ``settle_seconds`` behind the pull's start: the newest changes are read again on the
next run, where they are unchanged and cost no embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contextd.connectors.base import to_utc
from contextd.core.types import iso


@dataclass
class Watermark:
    since: datetime | None = None
    at_since: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> Watermark:
        if not data or not data.get("since"):
            return cls()
        return cls(to_utc(data["since"]), set(data.get("at_since") or []))

    def dump(self, cap: datetime | None = None) -> dict[str, Any]:
        """The cursor to persist; never later than ``cap`` (see ``settle_seconds``)."""
        if cap is not None and self.since is not None and self.since > cap:
            return {"since": iso(cap), "at_since": []}
        return {"since": iso(self.since) if self.since else None,
                "at_since": sorted(self.at_since)}

    def seen(self, ident: str, modified: datetime) -> bool:
        """True when this exact version was already taken (or is older than the mark)."""
        if self.since is None:
            return False
        return modified < self.since or (modified == self.since and ident in self.at_since)

    def advance(self, ident: str, modified: datetime) -> None:
        if self.since is None or modified > self.since:
            self.since, self.at_since = modified, {ident}
        elif modified == self.since:
            self.at_since.add(ident)
