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
- ``legs``: each retrieval leg (dense, BM25) runs as its own engine query under the same
  filter, in one batch, and every hit carries its rank and raw score from each leg that
  returned it (``legs``), so the retriever can fuse on calibrated evidence and explain.
- ``as_of``: only points whose ``updated_at`` is at or before it are visible (a condition
  of the same filter, inside the engine).
- ``with_vectors`` hits carry their dense vector as a float32 array. The Edge adapter reads
  it from a copy kept in the payload (:data:`VECTOR_FIELD`, see :func:`vector_field`); the
  server adapter asks the server for the stored vector. That field never reaches a hit's
  ``payload``.
- A hit's ``payload`` and ``dense`` may be shared with other searches' hits (the Edge
  adapter caches them by point version): read them, never change them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from contextd.core.types import AccessScope

DENSE = "dense"
SPARSE = "bm25"

SearchMode = Literal["hybrid", "dense", "sparse"]

# Payload fields with an engine index: the ACL and scope filters and the freshness formula
# read these, so they must never fall back to a full scan.
KEYWORD_FIELDS = ("acl", "source", "kind", "source_id", "entity_key")
DATETIME_FIELDS = ("updated_at",)

# A copy of each point's dense vector in its payload: float32 bytes, base64.
VECTOR_FIELD = "_dense_f32"
# What :meth:`VectorStore.versions` reads of each chunk.
VERSION_FIELDS = ("entity_key", "source", "source_id", "updated_at")
VERSION_LIMIT = 2000  # chunks, across the entities of one bundle


def vector_field(dense: Sequence[float] | np.ndarray) -> str:
    """The payload copy of a dense vector, exact (float32, as the engine stores it).

    Why a copy: the bundle's near-duplicate check needs the vectors of its ~60 candidates.
    Asked of the engine, each comes back as a Python list of 384 floats; building,
    converting and freeing those was about 3 ms of a request at 50k chunks. One string
    per hit decodes in microseconds. Payloads are kept on disk, so the copy costs disk
    (2 KB a chunk at 384 dimensions); in memory only the decoded vectors of the points
    the Edge adapter's payload cache holds (``edge_payload_cache``).
    """
    return base64.b64encode(np.asarray(dense, dtype=np.float32).tobytes()).decode("ascii")


def vector_of(value: object, dim: int) -> np.ndarray | None:
    """The vector in a payload copy, or None if it is missing or not ``dim`` floats (data
    written before the copy existed: the adapter then asks the engine for the vector)."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * dim:
        return None
    return np.frombuffer(raw, dtype=np.float32)


def vectors_of(values: Sequence[object], dim: int) -> list[np.ndarray | None]:
    """:func:`vector_of` of each value. When every value is a well-formed copy (the usual
    case) and a copy's bytes are a multiple of 3 (no base64 padding: 384 dimensions are
    1536 bytes), the copies are decoded as one string into one array: a bundle's ~170
    candidates cost one call instead of ~170."""
    size = 4 * dim
    chars = 4 * (size // 3)
    if values and size % 3 == 0 and all(isinstance(v, str) and len(v) == chars
                                        for v in values):
        try:
            raw = base64.b64decode("".join(values), validate=True)  # type: ignore[arg-type]
        except (binascii.Error, ValueError):
            pass
        else:
            return list(np.frombuffer(raw, dtype=np.float32).reshape(len(values), dim))
    return [vector_of(v, dim) for v in values]


def merge_legs(results: Sequence[tuple[str, Sequence[Any]]],
               ) -> tuple[dict[str, Any], dict[str, dict[str, tuple[int, float]]]]:
    """Hits of several legs by id (first appearance wins, in leg order), and per id each
    leg's (0-based rank, raw score). Each hit's id is read once."""
    hits: dict[str, Any] = {}
    legs: dict[str, dict[str, tuple[int, float]]] = {}
    for leg, found in results:
        for rank, hit in enumerate(found):
            key = str(hit.id)
            if key not in hits:
                hits[key] = hit
                legs[key] = {}
            legs[key][leg] = (rank, float(hit.score))
    return hits, legs


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
    legs: bool = False
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A search hit: the final engine score, its payload, the dense vector if asked, and
    (a ``legs`` search) each leg's 0-based rank and raw score by leg name."""

    id: str
    score: float
    payload: dict[str, Any]
    dense: np.ndarray | Sequence[float] | None = None
    legs: dict[str, tuple[int, float]] = field(default_factory=dict)


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

    def read_payloads(self, ids: Sequence[str]) -> int:
        """Read the payloads of ``ids`` and say how many exist: the probe that finds
        damaged payload storage (``StoreUnreadable``) before a query does."""
        ...

    def document_chunks(self, scope: AccessScope, source: str, source_id: str,
                        limit: int = 10_000) -> list[dict[str, Any]]:
        """Payloads of the chunks of one document visible to ``scope`` (the scope is part
        of the engine filter), in no particular order; empty when none is visible."""
        ...

    def source_counts(self, scope: AccessScope, limit: int = 1000) -> dict[str, int]:
        """Chunks visible to ``scope`` per source (counted by the engine under the filter)."""
        ...

    def versions(self, scope: AccessScope, entity_keys: Sequence[str],
                 until: datetime | None = None) -> list[dict[str, Any]]:
        """``entity_key``, ``source``, ``source_id`` and ``updated_at`` of every chunk of
        those entities visible to ``scope`` (the scope is part of the engine filter) and
        written no later than ``until``: which versions of an entity the caller may see."""
        ...

    def close(self) -> None:
        """Flush and release the engine."""
        ...
