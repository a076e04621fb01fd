"""Helpers for connector tests: drain a pull, index what it yielded, bump a file's mtime,
read what a user is served."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from contextd.connectors.base import Connector
from contextd.core.types import AccessScope, Batch, RecordFailure, SourceRecord
from contextd.retrieval.schemas import ContextQuery
from contextd.runtime import Runtime
from tests.conftest import SAMPLE_DATA

MANIFEST = {c["name"]: c for c in json.loads((SAMPLE_DATA / "connectors.json").read_text())}


def pull_all(connector: Connector, cursor: Mapping[str, Any] | None = None
             ) -> tuple[list[Batch], Mapping[str, Any] | None]:
    """Every batch of one pull and the cursor to resume from (the last one given)."""
    batches = list(connector.pull(cursor))
    last = next((b.cursor for b in reversed(batches) if b.cursor is not None), cursor)
    return batches, last


def records(batches: list[Batch]) -> dict[str, SourceRecord]:
    return {r.source_id: r for b in batches for r in b.records}


def failures(batches: list[Batch]) -> list[RecordFailure]:
    return [f for b in batches for f in b.failures]


def tombstones(batches: list[Batch]) -> list[str]:
    return [t.source_id for b in batches for t in b.tombstones]


def touch(path: Path, seconds: int = 1_900_000_000) -> None:
    """Give a file an mtime no earlier write could have, so the change is always seen."""
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


def served(runtime: Runtime, query: str, *principals: str) -> str:
    """The text of every item a user with ``principals`` is served for ``query``."""
    bundle = runtime.retriever.bundle(
        ContextQuery(query=query, user_id="t", top_k=50, token_budget=20000),
        AccessScope(frozenset({"public", *principals})))
    return "\n".join(i.text for i in bundle.items)


class CrashedMidSync(Exception):
    """What a connector made by :func:`crashing_after` raises in place of its next batch."""


class _CrashingAfter:
    def __init__(self, connector: Connector, batches: int) -> None:
        self._connector = connector
        self._batches = batches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connector, name)

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        for number, batch in enumerate(self._connector.pull(cursor)):
            if number == self._batches:
                raise CrashedMidSync
            yield batch


def crashing_after(connector: Connector, batches: int) -> Connector:
    """The real connector, crashing after ``batches`` checkpointed batches (a killed sync)."""
    return cast(Connector, _CrashingAfter(connector, batches))
