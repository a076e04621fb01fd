"""Builders for records and keys used across test modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from contextd.core.types import SourceRecord
from contextd.state.keys import create_key
from contextd.state.tables import ContextRequestRow


def record(source_id: str, text: str, *, acl: tuple[str, ...] = ("public",),
           title: str = "", kind: str = "document", source: str = "docs",
           updated_at: datetime | None = None, entity_key: str = "") -> SourceRecord:
    """A record with sensible defaults: public, dated 2026-11-01, kind document."""
    return SourceRecord(
        source=source, source_id=source_id, kind=kind, title=title or source_id, text=text,  # type: ignore[arg-type]
        updated_at=updated_at or datetime(2026, 11, 1, tzinfo=UTC), acl=acl,
        uri=f"file:///{source_id}", entity_key=entity_key,
    )


def keys(engine: Engine) -> dict[str, str]:
    """One fresh key per role."""
    return {role: create_key(engine, name=f"test-{role}", role=role)[1]
            for role in ("admin", "agent", "analyst")}


def context_rows(engine: Engine, count: int) -> list[ContextRequestRow]:
    """The context outcome rows once ``count`` are there (they are written after the
    response), or whatever is there after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        with Session(engine) as session:
            rows = list(session.exec(select(ContextRequestRow)))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    """Poll ``predicate`` every 5 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
