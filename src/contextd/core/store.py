"""The ``VectorStore`` interface every adapter implements, and the types it speaks.

Two adapters: :mod:`contextd.core.edge_store` (Qdrant Edge, in-process, the default) and
:mod:`contextd.core.server_store` (qdrant-client against a Qdrant server). One contract
test suite runs against both.

Contract, for every adapter:

- ``search`` applies the :class:`AccessScope` *inside* the engine query (every prefetch
  and the final stage), so the result is both safe and full-length.
- ``write`` applies a :class:`WriteBatch` so that a concurrent ``search`` in this process
  sees either none or all of it: a changed document is never served as a mix of versions
  or not at all.
- Freshness, when asked, is computed by the engine as
  ``score * (floor + (1 - floor) * exp_decay(age, half_life[kind]))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from contextd.core.types import AccessScope

DENSE = "dense"
SPARSE = "bm25"

SearchMode = Literal["hybrid", "dense", "sparse"]

# Payload fields with an engine index: the ACL and scope filters and the freshness formula
# read these, so they must never fall back to a full scan.
KEYWORD_FIELDS = ("acl", "source", "kind", "source_id", "entity_key")
DATETIME_FIELDS = ("updated_at",)


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A BM25 term vector (hashed token ids and weights)."""

    indices: list[int]
    values: list[float]


@dataclass(frozen=True, slots=True)
class ChunkPoint:
    """One chunk as stored: id (a UUID string), both vectors and its payload."""

    id: str
    dense: Sequence[float]
    sparse: SparseVec
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PayloadUpdate:
    """Fields to set on existing points (metadata or ACL changes without re-embedding)."""

    ids: Sequence[str]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """Every chunk of one source document."""

    source: str
    source_id: str


@dataclass(slots=True)
class WriteBatch:
    """Writes applied together, invisible to concurrent searches until all are done.

    Order of application: upserts, payload updates, id deletes, document deletes,
    source deletes.
    """

    upserts: list[ChunkPoint] = field(default_factory=list)
    payload_updates: list[PayloadUpdate] = field(default_factory=list)
    delete_ids: list[str] = field(default_factory=list)
    delete_documents: list[DocumentRef] = field(default_factory=list)
    delete_sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.upserts
            or self.payload_updates
            or self.delete_ids
            or self.delete_documents
            or self.delete_sources
        )


@dataclass(frozen=True, slots=True)
class Freshness:
    """Engine-side recency weighting: a floor so recency reorders but never buries."""

    now: datetime
    half_life_seconds: dict[str, float]
    floor: float = 0.75


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A scoped search. ``mode`` picks dense, BM25 or both fused with RRF."""

    scope: AccessScope
    limit: int
    dense: Sequence[float] | None = None
    sparse: SparseVec | None = None
    mode: SearchMode = "hybrid"
    prefetch_limit: int = 100
    rrf_k: int = 60
    freshness: Freshness | None = None
    with_vectors: bool = False


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A search hit: the final engine score, its payload, and the dense vector if asked."""

    id: str
    score: float
    payload: dict[str, Any]
    dense: Sequence[float] | None = None


class VectorStore(Protocol):
    """What the rest of contextd needs from a vector engine."""

    def write(self, batch: WriteBatch) -> None:
        """Apply ``batch`` atomically with respect to this process's searches."""
        ...

    def search(self, query: SearchQuery) -> list[ScoredChunk]:
        """Best ``query.limit`` chunks visible to ``query.scope``, best first."""
        ...

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored (lets a resumed ingest skip finished work)."""
        ...

    def count(self, source: str | None = None) -> int:
        """Number of stored chunks, in all or in one source."""
        ...

    def close(self) -> None:
        """Flush and release the engine."""
        ...
