"""The ingest pipeline: idempotent, incremental, and atomic per document.

- A record whose ``doc_hash`` (text, title, ACL, metadata) is unchanged is skipped before
  chunking: re-ingesting an unchanged corpus embeds and writes nothing.
- Chunk point ids are content-addressed (uuid5 of source, source id, chunk hash and
  occurrence), so an edit re-embeds only the chunks whose text changed; kept chunks get
  their document-level fields (version, ACL, dates) rewritten in place.
- New chunks, rewritten fields and removed chunks go to the store as one ``WriteBatch``,
  which the store applies atomically for searches: never both versions, never neither.
- The SQL row is written after the store. A crash in between re-processes the record next
  time; ids already in the store are not embedded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from contextd.core.embedder import Bm25Encoder, DenseEncoder
from contextd.core.settings import DEFAULT_FACT_ATTRIBUTES
from contextd.core.store import ChunkPoint, DocumentRef, PayloadUpdate, VectorStore, WriteBatch
from contextd.core.tokens import count_tokens
from contextd.core.types import SourceRecord, Tombstone, iso, utcnow
from contextd.ingest.chunking import Chunker
from contextd.memory.facts import close_facts, record_facts
from contextd.state.documents import get_documents, save_documents
from contextd.state.tables import DocumentRow

log = logging.getLogger(__name__)

_POINT_NS = uuid.UUID("6f1c2d1e-8f2a-4b7e-9c57-2a3f0d4c9b11")


@dataclass
class IngestStats:
    """What one ingest call did; summed across batches by the sync runner."""

    records: int = 0
    unchanged: int = 0
    changed: int = 0
    chunks_embedded: int = 0
    chunks_kept: int = 0
    chunks_deleted: int = 0
    deleted: int = 0
    embed_seconds: float = 0.0
    embed_cpu_seconds: float = 0.0
    embed_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: IngestStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class _Plan:
    """One changed record: its chunks, which need embedding, which are kept or dropped."""

    record: SourceRecord
    version: int
    doc_hash: str
    chunk_ids: list[str] = field(default_factory=list)
    new: list[tuple[str, int, str]] = field(default_factory=list)  # (id, index, text)
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def doc_hash(record: SourceRecord) -> str:
    """Hash of everything that is served or filtered on, so any change is re-ingested."""
    material = json.dumps({
        "kind": record.kind, "title": record.title, "text": record.text,
        "updated_at": iso(record.updated_at), "acl": sorted(set(record.acl)),
        "uri": record.uri, "author": record.author, "entity_key": record.entity_key,
        "entities": sorted(record.entities), "fields": record.fields,
        "updated_at_source": record.updated_at_source,
    }, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


def embed_text(title: str, chunk: str) -> str:
    """What is embedded for a chunk: the title gives a chunk its document's context."""
    return f"{title}\n{chunk}" if title else chunk


def chunk_id(source: str, source_id: str, text: str, occurrence: int) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return str(uuid.uuid5(_POINT_NS, f"{source}\x1f{source_id}\x1f{digest}\x1f{occurrence}"))


def document_payload(record: SourceRecord, version: int) -> dict[str, Any]:
    """Fields every chunk of a document carries (rewritten in place when they change)."""
    return {
        "source": record.source, "source_id": record.source_id, "kind": record.kind,
        "title": record.title, "title_tokens": count_tokens(f"{record.title}\n"),
        "uri": record.uri, "author": record.author,
        "updated_at": iso(record.updated_at), "updated_at_source": record.updated_at_source,
        "ingested_at": iso(utcnow()),
        "acl": sorted(set(record.acl)), "entity_key": record.entity_key or
        f"{record.source}:{record.source_id}", "entities": list(record.entities),
        "doc_version": version,
    }


class Ingestor:
    """Turns batches of records and tombstones into store writes and document rows."""

    def __init__(self, *, store: VectorStore, dense: DenseEncoder, sparse: Bm25Encoder,
                 engine: Engine, chunker: Chunker, facts_engine: Engine | None = None,
                 fact_attributes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.store = store
        self.dense = dense
        self.sparse = sparse
        self.engine = engine
        self.chunker = chunker
        # Temporal facts of CRM records live with the interaction memory.
        self.facts_engine = facts_engine or engine
        self.fact_attributes = fact_attributes if fact_attributes is not None \
            else DEFAULT_FACT_ATTRIBUTES

    def ingest(self, records: Sequence[SourceRecord],
               tombstones: Iterable[Tombstone] = ()) -> IngestStats:
        """Ingest one batch; records of several sources may be mixed."""
        started = time.perf_counter()
        stats = IngestStats(records=len(records))
        records = _last_per_id(records)
        plans = self._plan(records, stats)
        batch = WriteBatch()
        rows: list[DocumentRow] = []
        embed_started = time.perf_counter()
        stats.chunks_embedded = self._embed(plans, batch, stats)
        stats.embed_seconds = time.perf_counter() - embed_started
        for plan in plans:
            payload = document_payload(plan.record, plan.version)
            if plan.kept:
                batch.payload_updates.append(PayloadUpdate(plan.kept, payload))
            batch.delete_ids.extend(plan.dropped)
            stats.chunks_kept += len(plan.kept)
            stats.chunks_deleted += len(plan.dropped)
            rows.append(_row(plan))
        tomb = sorted({(t.source, t.source_id) for t in tombstones})
        batch.delete_documents.extend(DocumentRef(s, i) for s, i in tomb)
        stats.deleted = len(tomb)
        self.store.write(batch)
        # Facts before the document rows: if facts fail, the records are re-processed on
        # the next run (their chunks are reused), and recording facts is idempotent.
        record_facts(self.facts_engine, [(p.record, p.version) for p in plans],
                     self.fact_attributes)
        close_facts(self.facts_engine, [Tombstone(s, i) for s, i in tomb])
        save_documents(self.engine, rows=rows, deleted=tomb)
        stats.changed = len(plans)
        stats.seconds = time.perf_counter() - started
        return stats

    def _plan(self, records: Sequence[SourceRecord], stats: IngestStats) -> list[_Plan]:
        plans: list[_Plan] = []
        by_source: dict[str, list[SourceRecord]] = {}
        for record in records:
            by_source.setdefault(record.source, []).append(record)
        for source, group in by_source.items():
            stored = get_documents(self.engine, source=source,
                                   source_ids=[r.source_id for r in group])
            for record in group:
                digest = doc_hash(record)
                row = stored.get(record.source_id)
                if row is not None and not row.deleted and row.doc_hash == digest:
                    stats.unchanged += 1
                    continue
                version = (row.version + 1) if row is not None else 1
                plans.append(self._plan_record(record, version, digest, row))
        return plans

    def _plan_record(self, record: SourceRecord, version: int, digest: str,
                     row: DocumentRow | None) -> _Plan:
        plan = _Plan(record=record, version=version, doc_hash=digest)
        old = set(row.chunk_ids) if row is not None and not row.deleted else set()
        seen: dict[str, int] = {}
        for index, text in enumerate(self.chunker.split(record)):
            occurrence = seen.get(text, 0)
            seen[text] = occurrence + 1
            cid = chunk_id(record.source, record.source_id, text, occurrence)
            plan.chunk_ids.append(cid)
            if cid in old:
                plan.kept.append(cid)
            else:
                plan.new.append((cid, index, text))
        plan.dropped = sorted(old - set(plan.chunk_ids))
        return plan

    def _embed(self, plans: list[_Plan], batch: WriteBatch, stats: IngestStats) -> int:
        """Embed every new chunk of the batch in one call; reuse ids the store already has.

        Returns the number of chunks embedded.
        """
        wanted = [cid for plan in plans for cid, _, _ in plan.new]
        present = self.store.existing_ids(wanted) if wanted else set()
        todo: list[tuple[_Plan, str, int, str]] = []
        for plan in plans:
            for cid, index, text in plan.new:
                if cid in present:
                    plan.kept.append(cid)
                else:
                    todo.append((plan, cid, index, text))
        if not todo:
            return 0
        texts = [embed_text(plan.record.title, text) for plan, _, _, text in todo]
        embedded = self.dense.embed_documents(texts)
        dense = embedded.vectors
        stats.embed_cpu_seconds += embedded.cpu_seconds
        stats.embed_tokens += embedded.tokens
        sparse = self.sparse.encode_documents(texts)
        payloads: dict[int, dict[str, Any]] = {}
        for i, (plan, cid, index, text) in enumerate(todo):
            base = payloads.setdefault(id(plan), document_payload(plan.record, plan.version))
            # cl100k tokens of the text, counted once here so packing a bundle never
            # re-tokenizes stored text (see ranking.item_tokens).
            payload = {**base, "text": text, "chunk_index": index,
                       "text_tokens": count_tokens(text),
                       "content_hash": hashlib.sha256(text.encode()).hexdigest()}
            batch.upserts.append(ChunkPoint(cid, dense[i].tolist(), sparse[i], payload))
        return len(todo)


def _last_per_id(records: Sequence[SourceRecord]) -> list[SourceRecord]:
    """If a batch holds the same record twice, the later one wins."""
    latest: dict[tuple[str, str], SourceRecord] = {}
    for record in records:
        latest[(record.source, record.source_id)] = record
    return list(latest.values())


def _row(plan: _Plan) -> DocumentRow:
    record = plan.record
    return DocumentRow(
        source=record.source, source_id=record.source_id, kind=record.kind,
        title=record.title, uri=record.uri,
        entity_key=record.entity_key or f"{record.source}:{record.source_id}",
        doc_hash=plan.doc_hash, version=plan.version, updated_at=record.updated_at,
        ingested_at=utcnow(), deleted=False, acl=sorted(set(record.acl)),
        chunk_ids=plan.chunk_ids,
    )
