"""Domain types shared by connectors, ingest, retrieval and the API.

Frozen dataclasses: they cross thread and package boundaries and must not change under
a reader's feet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["document", "email", "crm"]
KINDS: tuple[str, ...] = ("document", "email", "crm")
PUBLIC = "public"


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the service reads."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """RFC 3339 with a ``Z`` suffix, the form stored in payloads and served."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_valid_principal(principal: str) -> bool:
    """``public``, ``user:<id>`` or ``group:<id>`` with a non-empty id."""
    if principal == PUBLIC:
        return True
    prefix, _, ident = principal.partition(":")
    return prefix in ("user", "group") and bool(ident.strip())


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One item pulled from a source, before chunking.

    ``source`` is the connector name; ``source_id`` is stable across pulls; ``entity_key``
    names the real-world thing the record is a version of (two dated versions of the same
    policy share it), so retrieval can rank the newer one first.
    """

    source: str
    source_id: str
    kind: Kind
    title: str
    text: str
    updated_at: datetime
    acl: tuple[str, ...]
    uri: str = ""
    author: str = ""
    entity_key: str = ""
    entities: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    # Which clock ``updated_at`` came from: the source's own content clock (``front_matter``,
    # ``pdf_metadata``, ``docx_core``, ``html_meta``, ``email_date``, ``crm_updated_at``,
    # ``column``) or, as the last resort, ``mtime``, which a copy or a clone resets.
    updated_at_source: str = "source"

    def __post_init__(self) -> None:
        if self.updated_at.tzinfo is None:
            raise ValueError(f"{self.source_id}: updated_at must be timezone-aware")
        bad = [p for p in self.acl if not is_valid_principal(p)]
        if bad:
            raise ValueError(f"{self.source_id}: invalid principals in ACL: {bad}")


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A record that no longer exists at its source and must stop being served."""

    source: str
    source_id: str


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A source item that could not be turned into a record; a value, not an exception."""

    source: str
    source_id: str
    error: str
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one step of a connector pull yields, with the cursor to checkpoint after it."""

    records: Sequence[SourceRecord] = ()
    tombstones: Sequence[Tombstone] = ()
    failures: Sequence[RecordFailure] = ()
    cursor: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AccessScope:
    """The visible set of a request: applied inside the vector query, never afterwards.

    ``principals`` is the user's effective principals (always holds ``public``);
    ``sources`` and ``kinds`` narrow it further (agent-key scope and request filters are
    intersected before they get here). ``None`` means "no narrowing"; an empty set means
    "nothing visible".
    """

    principals: frozenset[str]
    sources: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    # (payload field, allowed values): a point matches only when it holds at least one
    # value in that field and every value it holds is allowed (the memory of interactions
    # recorded under a scope is read only by keys whose scope covers it).
    within: tuple[tuple[str, frozenset[str]], ...] = ()

    def narrowed(self, *, sources: frozenset[str] | None = None,
                 kinds: frozenset[str] | None = None) -> AccessScope:
        """This scope intersected with more limits (None: no limit); it never widens."""
        return AccessScope(principals=self.principals,
                           sources=_intersect(self.sources, sources),
                           kinds=_intersect(self.kinds, kinds), within=self.within)

    @property
    def is_empty(self) -> bool:
        """True when nothing can match, so the engine need not be asked."""
        return (
            not self.principals
            or (self.sources is not None and not self.sources)
            or (self.kinds is not None and not self.kinds)
            or any(not allowed for _, allowed in self.within)
        )


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    return a if b is None else a & b
