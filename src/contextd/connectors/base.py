"""The connector contract and helpers shared by snapshot-style sources.

A connector pulls since a cursor and yields :class:`~contextd.core.types.Batch` values:
records, tombstones and failures (failures are values, never exceptions that end the
run), each batch carrying the cursor to checkpoint after it. ``list_ids`` lists what still
exists at the source so the runner can reconcile deletions the source never reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from contextd.core.types import Batch


class ConnectorConfig(BaseModel):
    """Base of every connector config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Connector(Protocol):
    """What every source kind implements."""

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


def file_state(path: Path) -> list[int]:
    """What tells a file changed without reading it: mtime in ns and size."""
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]


def to_utc(value: Any) -> datetime:
    """Parse a date/datetime (or ISO string) into an aware UTC datetime; ValueError if not."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a date: {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
