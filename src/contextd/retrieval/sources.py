"""What an agent may know about sources: which exist for it, their freshness, and the whole
current document behind a citation. Every read goes through the caller's ``AccessScope``
inside the engine, so an invisible document and a missing one look the same.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.errors import InvalidInput
from contextd.core.store import VectorStore
from contextd.core.types import AccessScope
from contextd.state.tables import ConnectorRow, DocumentRow

# The form get_context prints for an item (``source:source_id``), and the served citation
# ``title (where, updated YYYY-MM-DD)`` whose ``where`` may be that form too.
REF_SEPARATOR = ":"


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document as currently stored, its chunks joined in order."""

    source: str
    source_id: str
    kind: str
    title: str
    uri: str
    updated_at: str
    doc_version: int
    text: str
    chunks: int


def known_sources(engine: Engine) -> set[str]:
    """Every source name the service knows: configured connectors and ingested sources."""
    with Session(engine) as session:
        names = set(session.exec(select(ConnectorRow.name)))
        names.update(session.exec(select(DocumentRow.source).distinct()))
    return names


def check_sources(requested: Iterable[str], known: set[str],
                  allowed: frozenset[str] | None) -> None:
    """422 for a requested source this key cannot name, listing the ones it can (with the
    closest spelling): an unknown filter must never silently match nothing or widen."""
    valid = sorted(known if allowed is None else known & allowed)
    unknown = [s for s in requested if s not in valid]
    if not unknown:
        return
    details = [{"field": "sources", "value": name, "valid": valid,
                "did_you_mean": difflib.get_close_matches(name, valid, n=3)}
               for name in unknown]
    hint = details[0]["did_you_mean"]
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise InvalidInput(f"unknown source {unknown[0]!r}{suggestion} valid sources: "
                       f"{', '.join(valid) or '(none)'}", details=details)


def read_document(store: VectorStore, scope: AccessScope, *, source: str,
                  source_id: str) -> SourceDocument | None:
    """The current version of one document as ``scope`` may see it, or None."""
    payloads = store.document_chunks(scope, source, source_id)
    if not payloads:
        return None
    version = max(int(p.get("doc_version") or 0) for p in payloads)
    current = sorted((p for p in payloads if int(p.get("doc_version") or 0) == version),
                     key=lambda p: int(p.get("chunk_index") or 0))
    head = current[0]
    return SourceDocument(
        source=source, source_id=source_id, kind=str(head.get("kind", "")),
        title=str(head.get("title", "")), uri=str(head.get("uri", "")),
        updated_at=str(head.get("updated_at", "")), doc_version=version,
        text=_joined(str(p.get("text", "")) for p in current), chunks=len(current))


def _joined(chunks: Iterable[str]) -> str:
    """Chunk texts in order without the sentence overlap the chunker repeats."""
    out = ""
    for text in chunks:
        if not out:
            out = text
            continue
        overlap = _overlap(out, text)
        out = out + text[overlap:] if overlap else f"{out}\n\n{text}"
    return out


def _overlap(left: str, right: str, window: int = 4000, probe: int = 16) -> int:
    """Length of the longest suffix of ``left`` (at least ``probe`` characters, within its
    last ``window``) that starts ``right``; 0 when the chunks do not overlap."""
    if len(right) < probe:
        return 0
    head = right[:probe]
    start = max(0, len(left) - window)
    at = left.find(head, start)
    while at != -1:
        if right.startswith(left[at:]):
            return len(left) - at
        at = left.find(head, at + 1)
    return 0


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A source as an agent sees it: what it holds for the caller and how fresh it is."""

    name: str
    kinds: list[str]
    items: int
    connector: bool
    state: str
    last_success_at: datetime | None
    lag_seconds: float | None
    last_run_at: datetime | None


def visible_sources(engine: Engine, store: VectorStore, scope: AccessScope,
                    status_of: Any) -> list[SourceInfo]:
    """Sources with at least one item ``scope`` may see (a source the caller sees nothing
    of is not named). ``status_of(row)`` gives a connector's state and freshness."""
    counts = store.source_counts(scope)
    if not counts:
        return []
    with Session(engine) as session:
        connectors = {row.name: row for row in session.exec(
            select(ConnectorRow).where(col(ConnectorRow.name).in_(list(counts))))}
        kinds: dict[str, set[str]] = {}
        for source, kind in session.exec(
                select(DocumentRow.source, DocumentRow.kind).where(
                    col(DocumentRow.source).in_(list(counts))).distinct()):
            kinds.setdefault(source, set()).add(kind)
    allowed_kinds = scope.kinds
    out: list[SourceInfo] = []
    for name in sorted(counts):
        row = connectors.get(name)
        status = status_of(row) if row is not None else None
        shown = sorted(k for k in kinds.get(name, ()) if allowed_kinds is None
                       or k in allowed_kinds)
        out.append(SourceInfo(
            name=name, kinds=shown, items=counts[name], connector=row is not None,
            state=status.state if status else "unscheduled",
            last_success_at=status.last_success_at if status else None,
            lag_seconds=status.lag_seconds if status else None,
            last_run_at=status.last_run_at if status else None))
    return out
