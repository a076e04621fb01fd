"""The composition root: builds the engine, store, encoders, ingestor and retriever once.

Both the HTTP app and the command line get their collaborators from here, so there is
exactly one place that decides Edge vs server store or which model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy.engine import Engine

from contextd.connectors.limits import OutboundPolicy, SourceLimits
from contextd.core.cpu_slots import CpuSlots
from contextd.core.embedder import Bm25Encoder, DenseEncoder, SentenceTransformerEncoder
from contextd.core.errors import Unavailable
from contextd.core.settings import Settings
from contextd.core.store import VectorStore
from contextd.ingest.chunking import Chunker
from contextd.ingest.pipeline import Ingestor
from contextd.memory.recall import MemoryRecall
from contextd.retrieval.lag import SourceLag
from contextd.retrieval.service import Retriever
from contextd.state import deferred
from contextd.state.db import make_engine, migrate, require_schema
from contextd.sync.connector_service import ConnectorService
from contextd.sync.consistency import ConsistencyMonitor
from contextd.sync.retry import RetryPolicy
from contextd.sync.runs import RunSettings


def open_store(settings: Settings, dim: int, *, memory: bool = False) -> VectorStore:
    """Qdrant server when ``qdrant_url`` is set, else the embedded Edge shard.

    ``memory`` opens the separate collection of interaction vectors, which item search
    never reads.
    """
    collection = f"{settings.collection}_memory" if memory else settings.collection
    if settings.qdrant_url:
        from contextd.core.server_store import ServerStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerStore.from_url(settings.qdrant_url, api_key, collection, dim)
    from contextd.core.edge_store import EdgeStore

    path = settings.edge_path.parent / collection
    try:
        return EdgeStore(path, dim, search_threads=settings.edge_search_threads,
                         payload_cache=settings.edge_payload_cache)
    except Exception as exc:
        if "WouldBlock" not in str(exc):
            raise
        raise Unavailable(
            f"the embedded store at {path} is open in another process (a running contextd "
            "serve, or another command); commands that find the service's files in the "
            "data directory go through it, so this one is another tool: wait for it to "
            "finish") from None


def source_limits(settings: Settings) -> SourceLimits:
    """Where connectors configured through the API may reach, from the settings."""
    return SourceLimits(
        outbound=OutboundPolicy(allow=tuple(settings.outbound_allow),
                                own_listener=(settings.host, settings.port)),
        allowed_roots=tuple(settings.filesystem_allowed_roots))


@dataclass
class Runtime:
    """Lazily built collaborators for one process (or one test)."""

    settings: Settings
    dense_encoder: DenseEncoder | None = None
    _store: VectorStore | None = field(default=None, repr=False)
    _memory_store: VectorStore | None = field(default=None, repr=False)

    def migrate(self) -> dict[str, str]:
        """Bring every SQL database of these settings to the latest schema (``contextd
        migrate``); the revision of each, by URL without password."""
        done: dict[str, str] = {}
        for url in dict.fromkeys((self.settings.sql_url, self.settings.memory_sql_url)):
            engine = make_engine(url)
            try:
                done[engine.url.render_as_string(hide_password=True)] = migrate(engine)
            finally:
                engine.dispose()
        return done

    def _checked_engine(self, url: str) -> Engine:
        """An engine on ``url``; ConfigError (run ``contextd migrate``) when its schema is
        behind, with the pool released."""
        s = self.settings
        engine = make_engine(url, timeout=s.database_timeout_seconds,
                             cooldown=s.database_retry_seconds)
        try:
            require_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return engine

    @cached_property
    def engine(self) -> Engine:
        """The SQL engine; ConfigError (run ``contextd migrate``) when the schema is behind."""
        return self._checked_engine(self.settings.sql_url)

    @cached_property
    def memory_engine(self) -> Engine:
        """Interactions and entity facts: the main database unless
        ``memory_database_url`` puts them elsewhere."""
        if self.settings.memory_sql_url == self.settings.sql_url:
            return self.engine
        return self._checked_engine(self.settings.memory_sql_url)

    @cached_property
    def dense(self) -> DenseEncoder:
        return self.dense_encoder or SentenceTransformerEncoder(
            self.settings.embedding_model,
            document_job_chunks=self.settings.embedding_document_job_chunks,
            document_job_chars=self.settings.embedding_document_job_chars,
            max_query_batch=self.settings.embedding_query_batch,
            threads=self.settings.embedding_threads,
            query_threads=self.settings.embedding_query_threads,
            document_process=self.settings.embedding_document_process,
            document_nice=self.settings.embedding_document_nice,
            query_process=self.settings.embedding_query_process)

    @cached_property
    def sparse(self) -> Bm25Encoder:
        return Bm25Encoder()

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings, self.dense.dim)
        return self._store

    @property
    def memory_store(self) -> VectorStore:
        """The collection of interaction vectors (one ``source`` per user)."""
        if self._memory_store is None:
            self._memory_store = open_store(self.settings, self.dense.dim, memory=True)
        return self._memory_store

    @cached_property
    def memory_recall(self) -> MemoryRecall:
        return MemoryRecall(engine=self.memory_engine, store=self.memory_store,
                            settings=self.settings)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(store=self.store, dense=self.dense, sparse=self.sparse,
                        engine=self.engine,
                        chunker=Chunker(self.settings.chunk_size, self.settings.chunk_overlap),
                        facts_engine=self.memory_engine,
                        fact_attributes=self.settings.fact_attributes)

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(store=self.store, dense=self.dense, sparse=self.sparse,
                         settings=self.settings, source_lag=self.source_lag,
                         slots=self.cpu_slots)

    @cached_property
    def cpu_slots(self) -> CpuSlots:
        """The bound on request threads running Python at once (``request_cpu_slots``)."""
        return CpuSlots(self.settings.request_cpu_slots)

    @cached_property
    def source_lag(self) -> SourceLag:
        """Last successful sync per source, for the bundles' freshness-objective warnings."""
        from contextd.quality.sources import connector_health

        def last_success() -> dict[str, datetime | None]:
            return {h.name: h.last_success_at for h in connector_health(self.engine)}

        return SourceLag(last_success, objectives=self.settings.freshness_objective_seconds,
                         default_seconds=self.settings.quality_lag_objective_seconds)

    @cached_property
    def connectors(self) -> ConnectorService:
        s = self.settings
        policy = RetryPolicy(attempts=s.sync_retry_attempts,
                             initial_seconds=s.sync_retry_initial_seconds,
                             max_seconds=s.sync_retry_max_seconds)
        return ConnectorService(
            engine=self.engine, store=self.store, ingestor=lambda: self.ingestor,
            settings=RunSettings(retry=policy, lease_ttl_seconds=s.sync_lease_ttl_seconds,
                                 limits=source_limits(s)),
            max_workers=s.sync_workers, refresh_seconds=s.schedule_refresh_seconds,
            poll_seconds=s.sync_poll_seconds)

    @cached_property
    def consistency(self) -> ConsistencyMonitor:
        s = self.settings
        return ConsistencyMonitor(engine=self.engine, store=self.store,
                                  connectors=self.connectors,
                                  interval=s.consistency_check_seconds,
                                  sample=s.consistency_sample,
                                  # api replicas report; workers (or `all`) rebuild
                                  auto_rebuild=s.auto_rebuild and s.role != "api")

    def close(self) -> None:
        """Stop the sync workers (running syncs checkpoint), then release the stores, write
        the rows requests queued (``state.deferred``) and release the SQL pools."""
        if "consistency" in self.__dict__:
            self.consistency.close()
        if "connectors" in self.__dict__:
            self.connectors.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._memory_store is not None:
            self._memory_store.close()
            self._memory_store = None
        if "memory_engine" in self.__dict__:
            deferred.close(self.memory_engine)
            self.memory_engine.dispose()
        if "engine" in self.__dict__:
            deferred.close(self.engine)  # the rows requests queued, before the pool goes
            self.engine.dispose()
        if "dense" in self.__dict__ and self.dense_encoder is None:
            close = getattr(self.dense, "close", None)
            if close is not None:
                close()  # the model thread and the document process
