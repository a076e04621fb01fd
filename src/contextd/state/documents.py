"""Repository of ingested documents: hashes, versions, chunk ids, deletions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contextd.core.types import utcnow
from contextd.state.db import session_scope
from contextd.state.tables import ConnectorCursor, DocumentRow

_IN_CHUNK = 500  # ids per IN (...) clause: stays under every backend's parameter limit


def get_documents(engine: Engine, *, source: str,
                  source_ids: Sequence[str]) -> dict[str, DocumentRow]:
    """Stored rows for ``source_ids`` of ``source`` (deleted ones included)."""
    found: dict[str, DocumentRow] = {}
    with Session(engine, expire_on_commit=False) as session:
        for start in range(0, len(source_ids), _IN_CHUNK):
            ids = list(source_ids[start:start + _IN_CHUNK])
            rows = session.exec(select(DocumentRow).where(
                DocumentRow.source == source, col(DocumentRow.source_id).in_(ids)))
            found.update({r.source_id: r for r in rows})
    return found


def save_documents(engine: Engine, *, rows: Iterable[DocumentRow],
                   deleted: Iterable[tuple[str, str]] = ()) -> None:
    """Write new/changed rows and mark tombstoned ones deleted, in one transaction."""
    with session_scope(engine) as session:
        for row in rows:
            session.merge(row)
        for source, source_id in deleted:
            existing = session.get(DocumentRow, (source, source_id))
            if existing is not None and not existing.deleted:
                existing.deleted = True
                existing.chunk_ids = []
                existing.ingested_at = utcnow()
                session.add(existing)


def live_source_ids(engine: Engine, *, source: str) -> set[str]:
    """Ids of the source's documents currently served (for deletion reconciliation)."""
    with Session(engine) as session:
        rows = session.exec(select(DocumentRow.source_id).where(
            DocumentRow.source == source, DocumentRow.deleted == False))  # noqa: E712
        return set(rows)


def load_cursor(engine: Engine, *, name: str) -> dict[str, Any] | None:
    """The last checkpointed cursor of connector ``name``, or None before its first run."""
    with Session(engine) as session:
        row = session.get(ConnectorCursor, name)
        return dict(row.cursor) if row is not None else None


def save_cursor(engine: Engine, *, name: str, kind: str, cursor: dict[str, Any]) -> None:
    """Checkpoint a connector's cursor."""
    with session_scope(engine) as session:
        row = session.get(ConnectorCursor, name)
        if row is None:
            row = ConnectorCursor(name=name, kind=kind, cursor=cursor)
        else:
            row.cursor = cursor
            row.updated_at = utcnow()
        session.add(row)


def expected_chunks(engine: Engine) -> dict[str, tuple[int, int]]:
    """Per source: (live documents, chunks they name), what the vector store must hold."""
    found: dict[str, list[int]] = {}
    with Session(engine) as session:
        rows = session.exec(select(DocumentRow.source, DocumentRow.chunk_ids).where(
            DocumentRow.deleted == False).execution_options(yield_per=2000))  # noqa: E712
        for source, chunk_ids in rows:
            counts = found.setdefault(source, [0, 0])
            counts[0] += 1
            counts[1] += len(chunk_ids or [])
    return {source: (docs, chunks) for source, (docs, chunks) in found.items()}


def sample_documents(engine: Engine, *, limit: int) -> list[tuple[str, str, list[str]]]:
    """Up to ``limit`` live documents picked at random: (source, source_id, chunk ids)."""
    if limit <= 0:
        return []
    with Session(engine) as session:
        rows = session.exec(select(DocumentRow.source, DocumentRow.source_id,
                                   DocumentRow.chunk_ids)
                            .where(DocumentRow.deleted == False)  # noqa: E712
                            .order_by(func.random()).limit(limit))
        return [(source, source_id, list(chunk_ids or [])) for source, source_id, chunk_ids
                in rows]


def forget_source_state(engine: Engine, *, source: str) -> int:
    """Make the next sync of ``source`` read everything and embed it again: its documents'
    hashes and chunk ids are cleared (the ingestor skips a record by its hash and keeps
    chunks it believes stored) and its cursor is dropped (so the connector pulls every
    record, not only changes). How a store that lost points is refilled. Documents
    touched."""
    with session_scope(engine) as session:
        result: Any = session.execute(
            update(DocumentRow).where(col(DocumentRow.source) == source,
                                      col(DocumentRow.deleted) == False)  # noqa: E712
            .values(doc_hash="", chunk_ids=[]))
        touched = result.rowcount
        cursor = session.get(ConnectorCursor, source)
        if cursor is not None:
            session.delete(cursor)
    return int(touched or 0)
