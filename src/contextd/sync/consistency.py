"""The vector store checked against the SQL documents, and rebuilt from the sources.

SQL says which documents are live and which chunk ids each one has; the store must hold
those points. A check compares, per source, the chunks SQL names with the points the store
counts, looks a random sample of documents' chunk ids up in the store, and reads a few
payloads (damaged payload pages fail to decode there, before any query meets them):

- ``ok``; ``store_missing`` (SQL names chunks, the store has none: its files were lost);
  ``store_behind`` (fewer points than chunks, or sampled ids absent); ``store_unreadable``
  (the engine cannot decode its data); ``store_unavailable`` / ``database_unavailable``.

A missing or behind store is rebuilt from the sources: for each affected source with a
configured connector, its points are deleted, its documents' hashes, chunk ids and cursor
forgotten (:func:`~contextd.state.documents.forget_source_state`), and its sync run, which
then re-reads and re-embeds every record. Sources loaded without a connector (``contextd
ingest``, the demo loader) cannot be re-read by the service: the report says so, and they
stay missing until loaded again. An unreadable store is not rebuilt in place: restore a
backup or delete the store directory, which turns it into a missing store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from contextd.core.errors import Conflict, StoreUnreadable
from contextd.core.store import VectorStore, WriteBatch
from contextd.core.telemetry import STORE_CONSISTENT, STORE_MISSING_CHUNKS, STORE_REBUILDS
from contextd.core.types import utcnow
from contextd.state.connectors import list_connectors
from contextd.state.documents import expected_chunks, forget_source_state, sample_documents
from contextd.sync.connector_service import validate_config

log = logging.getLogger(__name__)

_PAYLOAD_PROBE = 8  # payloads read per check: enough to meet a damaged page early


@dataclass
class ConsistencyReport:
    """One comparison of the store with SQL."""

    status: str
    reason: str
    checked_at: datetime = field(default_factory=utcnow)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    affected: list[str] = field(default_factory=list)
    sampled_documents: int = 0
    missing_in_sample: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checked_at": self.checked_at.isoformat()}


def check_consistency(engine: Engine, store: VectorStore, *, sample: int = 200
                      ) -> ConsistencyReport:
    """Compare ``store`` with the documents in SQL (see the module docstring)."""
    try:
        expected = expected_chunks(engine)
        picked = sample_documents(engine, limit=sample)
    except SQLAlchemyError as exc:
        return ConsistencyReport("database_unavailable", f"the database did not answer: "
                                 f"{type(exc).__name__}")
    try:
        stored = {source: store.count(source) for source in expected}
        sampled_ids = [cid for _, _, ids in picked for cid in ids]
        present = store.existing_ids(sampled_ids)
        store.read_payloads(sorted(present)[:_PAYLOAD_PROBE])
    except StoreUnreadable as exc:
        return ConsistencyReport("store_unreadable", exc.message)
    except Exception as exc:  # the engine or server is down: report, never raise
        return ConsistencyReport("store_unavailable", f"the vector store did not answer: "
                                 f"{type(exc).__name__}")
    sources = {source: {"documents": docs, "chunks": chunks, "points": stored[source]}
               for source, (docs, chunks) in sorted(expected.items())}
    affected = {s for s, c in sources.items() if c["points"] < c["chunks"]}
    missing_docs = [(source, ids) for source, _, ids in picked
                    if any(cid not in present for cid in ids)]
    affected |= {source for source, _ in missing_docs}
    chunks = sum(c["chunks"] for c in sources.values())
    points = sum(min(c["points"], c["chunks"]) for c in sources.values())
    report = ConsistencyReport("ok", "the store holds every chunk the documents name",
                               sources=sources, affected=sorted(affected),
                               sampled_documents=len(picked),
                               missing_in_sample=len(missing_docs))
    if affected and chunks and not any(c["points"] for c in sources.values()):
        report.status = "store_missing"
        report.reason = (f"the vector store holds none of the {chunks} chunks of "
                         f"{sum(c['documents'] for c in sources.values())} documents")
    elif affected:
        report.status = "store_behind"
        report.reason = (f"the vector store is behind: {chunks - points} of {chunks} chunks "
                         f"missing, {len(missing_docs)} of {len(picked)} sampled documents "
                         "incomplete")
    return report


@dataclass
class RebuildProgress:
    """What a rebuild did so far, per source: pending, running, done, failed, or
    no_connector (loaded without one: load it again with ``contextd ingest``)."""

    state: str = "idle"  # idle | running | finished
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sources: dict[str, str] = field(default_factory=dict)
    embedded: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


class ConsistencyMonitor:
    """Checks at start and every ``interval`` seconds; rebuilds what is missing.

    ``connectors`` is the :class:`~contextd.sync.connector_service.ConnectorService` that
    runs the rebuild syncs (None: report only, as ``contextd verify`` does).
    """

    def __init__(self, *, engine: Engine, store: VectorStore, connectors: Any | None,
                 interval: float = 300.0, sample: int = 200, auto_rebuild: bool = True
                 ) -> None:
        self.engine = engine
        self.store = store
        self.connectors = connectors
        self.interval = interval
        self.sample = sample
        self.auto_rebuild = auto_rebuild and connectors is not None
        self.report = ConsistencyReport("unchecked", "not checked yet")
        self.progress = RebuildProgress()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rebuilder: threading.Thread | None = None

    def start(self) -> None:
        """Check now (so readiness is right from the first probe), then on a schedule."""
        self._stop.clear()
        self.check()
        if self.interval > 0 and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._loop, name="contextd-consistency",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._rebuilder):
            if thread is not None:
                thread.join(timeout=10)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> ConsistencyReport:
        """Compare now, publish the result (log, metrics) and start a rebuild if needed."""
        report = check_consistency(self.engine, self.store, sample=self.sample)
        with self._lock:
            self.report = report
        STORE_CONSISTENT.set(1 if report.ok else 0)
        STORE_MISSING_CHUNKS.set(sum(max(0, c["chunks"] - c["points"])
                                     for c in report.sources.values()))
        if report.ok:
            log.info("vector store consistent", extra={
                "event": "store_check", "status": report.status,
                "sampled": report.sampled_documents})
        else:
            log.warning("vector store inconsistent", extra={
                "event": "store_check", "status": report.status, "reason": report.reason,
                "sources": report.affected})
        if report.status in ("store_missing", "store_behind") and self.auto_rebuild:
            self.rebuild(report.affected)
        return report

    def rebuild(self, sources: list[str]) -> bool:
        """Start rebuilding ``sources`` in the background; False if one is running."""
        with self._lock:
            if self._rebuilder is not None and self._rebuilder.is_alive():
                return False
            self.progress = RebuildProgress(state="running", started_at=utcnow(),
                                            sources={s: "pending" for s in sources})
            self._rebuilder = threading.Thread(target=self._rebuild, args=(list(sources),),
                                               name="contextd-rebuild", daemon=True)
            self._rebuilder.start()
        return True

    def wait_rebuilt(self, timeout: float) -> bool:
        """Block until the running rebuild ends (tests, ``contextd verify --rebuild``)."""
        thread = self._rebuilder
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _rebuild(self, sources: list[str]) -> None:
        connectors = self.connectors
        assert connectors is not None  # rebuilds start only with a connector service
        rows = {row.name: row for row in list_connectors(self.engine)}
        for source in sources:
            row = rows.get(source)
            if row is None:
                self._mark(source, "no_connector")
                log.error("source cannot be rebuilt: it was loaded without a connector; "
                          "load it again (contextd ingest)", extra={
                              "event": "store_rebuild", "source": source})
                continue
            self._mark(source, "running")
            try:
                # A config that no longer builds (say, a path now outside the allowed
                # roots) would fail after the drop: keep what the store still has.
                validate_config(row.name, row.kind, row.config,
                                connectors.settings.limits)
                self.store.write(WriteBatch(delete_sources=[source]))
                forgotten = forget_source_state(self.engine, source=source)
                run = self._run(row.id)
                self.progress.embedded[source] = run.chunks_embedded
                ok = run.status in ("success", "partial")
                self._mark(source, "done" if ok else "failed")
                STORE_REBUILDS.labels("done" if ok else "failed").inc()
                log.info("source rebuilt from its connector", extra={
                    "event": "store_rebuild", "source": source, "documents": forgotten,
                    "status": run.status, "chunks_embedded": run.chunks_embedded})
            except Exception as exc:  # one source failing must not stop the others
                self._mark(source, "failed")
                STORE_REBUILDS.labels("failed").inc()
                log.error("source rebuild failed", exc_info=exc,
                          extra={"event": "store_rebuild", "source": source})
        self.progress.state = "finished"
        self.progress.finished_at = utcnow()
        self.check_quietly()

    def _run(self, connector_id: str) -> Any:
        """A sync run now; a run already in progress is waited out, then ours runs."""
        deadline = time.monotonic() + 600
        while True:
            try:
                assert self.connectors is not None
                return self.connectors.run_blocking(connector_id, trigger="rebuild")
            except Conflict:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(1.0)

    def check_quietly(self) -> None:
        """Check again after a rebuild without starting another one."""
        auto, self.auto_rebuild = self.auto_rebuild, False
        try:
            self.check()
        finally:
            self.auto_rebuild = auto

    def _mark(self, source: str, state: str) -> None:
        self.progress.sources[source] = state

    def readiness(self) -> tuple[bool, str]:
        """(ready, what /readyz says about the store): the status code and its reason."""
        report = self.report
        if report.ok or report.status == "unchecked":
            return True, "ok"
        detail = f"{report.status}: {report.reason}"
        if self.progress.state == "running":
            done = sum(1 for s in self.progress.sources.values() if s in ("done", "failed"))
            detail += f"; rebuild running ({done}/{len(self.progress.sources)} sources)"
        elif "no_connector" in self.progress.sources.values():
            detail += "; some sources were loaded without a connector: load them again"
        return False, detail

    def status(self) -> dict[str, Any]:
        """The last report and the rebuild's progress (the admin status endpoint)."""
        return {"report": self.report.as_dict(), "rebuild": self.progress.as_dict()}
