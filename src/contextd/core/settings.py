"""One settings class for the whole service, read from ``CONTEXTD_*`` environment variables.

Reach it through :func:`get_settings` (cached) so tests can pass their own ``Settings``
instead of patching the environment.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contextd.core.types import KINDS

DEFAULT_HALF_LIFE_DAYS: dict[str, float] = {"document": 180.0, "email": 30.0, "crm": 60.0}
# CRM fields kept as temporal facts, per object type (the part of entity_key before ':').
DEFAULT_FACT_ATTRIBUTES: dict[str, list[str]] = {
    "deal": ["stage", "amount", "close_date", "owner"],
    "account": ["plan", "tier", "status", "industry", "owner"],
    "contact": ["role", "account_id", "owner"],
}


class Settings(BaseSettings):
    """Service configuration; every field can be set as ``CONTEXTD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONTEXTD_", extra="ignore")

    data_dir: Path = Field(Path(".contextd"), description=(
        "Where the SQLite database, the embedded Qdrant Edge shard and the demo's keys live."))
    url: str | None = Field(
        None, description="Address of a running service, for the command line's admin "
        "commands (`contextd keys list`, `contextd connectors ...`); default "
        "http://<host>:<port>.")
    api_key: SecretStr | None = Field(
        None, description="The admin key those commands send; never logged.")
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the HTTP API listens on.")
    database_url: str | None = Field(None, description=(
        "SQLAlchemy URL of the state database (e.g. postgresql+psycopg://...); unset: a "
        "SQLite file in data_dir."))
    qdrant_url: str | None = Field(None, description=(
        "A Qdrant server or cluster; unset: the embedded Qdrant Edge shard in data_dir."))
    qdrant_api_key: SecretStr | None = Field(None, description="API key of that Qdrant server.")
    collection: str = Field("contextd", description="Name of the vector collection.")
    embedding_model: str = Field("all-MiniLM-L6-v2", description=(
        "all-MiniLM-L6-v2 (bundled, loaded offline) or a local sentence-transformers "
        "model directory."))
    embedding_document_job_chunks: int = Field(16, ge=1, le=4096, description=(
        "Most chunks per document job on the model thread (with "
        "embedding_document_process off). A query waits behind at most one such job, so "
        "smaller jobs mean shorter waits for queries during a sync."))
    embedding_document_job_chars: int = Field(2000, ge=1, description=(
        "Most characters per document job (a job holds at least one chunk): about 500 "
        "model tokens, so a job of long chunks is as short to wait for as one of short "
        "chunks (about 0.1-0.3 s on two cores)."))
    embedding_document_process: bool = Field(True, description=(
        "Embed documents (syncs, ingest) in a child process at a lower CPU priority, so "
        "queries never wait behind them; false: small document jobs on the server's model "
        "thread, behind any waiting query."))
    embedding_document_nice: int = Field(10, ge=0, le=19, description=(
        "How much the document process lowers its own CPU priority (os.nice)."))
    embedding_query_process: bool = Field(True, description=(
        "Embed queries in a child process: its forward passes do not queue for the "
        "server's interpreter lock behind concurrent requests; false: on the server's "
        "model thread (one process less, for tests and small installs)."))
    embedding_query_batch: int = Field(64, ge=1, le=1024, description=(
        "Most queries embedded in one forward pass: the queries waiting when the query "
        "process (or the model thread) comes free share it."))
    embedding_threads: int | None = Field(None, description=(
        "torch threads for document embedding; unset: all cores."))
    embedding_query_threads: int = Field(1, ge=1, description=(
        "torch threads of the query process (or of the model thread's query lane). One: "
        "on two busy cores, two made one client's requests/s 8x lower, the threads "
        "waiting for each other beside the server's own work (docs/performance.md)."))
    edge_search_threads: int | None = Field(1, ge=1, le=256, description=(
        "Threads of the Edge shard's search pool; unset: one per CPU. One by default: on "
        "small machines the idle pool threads slow the request's own work after each "
        "search, and one thread searches as fast (docs/performance.md)."))
    edge_payload_cache: int = Field(10_000, ge=0, le=10_000_000, description=(
        "Points whose payload and vector each Edge store keeps in memory for searches "
        "(least recently used out; 0: none): about 5 KB each with 384 dimensions and "
        "200-token chunks, 50 MB at the default. The "
        "engine holds the GIL while it reads payloads, so a search reading ~170 of them "
        "blocks every other request for ~5 ms; cached, a search reads ids and scores only."))
    chunk_size: int = Field(200, ge=32, le=4096, description="Tokens per chunk.")
    chunk_overlap: int = Field(20, ge=0, le=1024, description=(
        "Tokens shared by neighbouring chunks; smaller than chunk_size."))
    freshness_floor: float = Field(0.75, ge=0.0, le=1.0, description=(
        "Lowest freshness factor: recency reorders items of comparable relevance but never "
        "buries a strongly relevant old one."))
    half_life_days: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_HALF_LIFE_DAYS), description=(
            "Freshness half-life per kind (document, email, crm), in days; JSON object."))
    prefetch_limit: int = Field(100, ge=10, le=2000, description=(
        "Candidates fetched by each of the dense and BM25 legs before fusion. Fewer serve "
        "more requests per second under concurrency at some cost in ranking quality "
        "(measured in docs/performance.md)."))
    request_cpu_slots: int = Field(2, ge=0, le=1024, description=(
        "Threads of POST /v1/context running Python at once (0: no bound); the others wait "
        "for a slot, and a thread gives its slot up while its query embeds. Few threads keep "
        "the interpreter lock busy where many would contend for it (docs/performance.md)."))
    rrf_k: int = Field(60, ge=1, le=1000, description="The k of reciprocal rank fusion.")
    near_duplicate_cosine: float = Field(0.97, gt=0.0, le=1.0, description=(
        "Cosine similarity above which two served chunks count as duplicates."))
    fusion: Literal["score", "rrf"] = Field(
        "score", description="How the dense and BM25 legs are fused: 'score' (cosine and "
        "BM25 relative to the query's best lexical match, weighted; calibrated relevance) or "
        "'rrf' (reciprocal rank fusion in the engine). Measured in docs/ranking.md.")
    dense_weight: float = Field(
        0.7, ge=0.0, le=1.0, description="Weight of the dense cosine in score fusion; BM25 "
        "relative to the best lexical match of the query gets the rest.")
    feedback_docs: int = Field(
        5, ge=0, le=100, description="Pseudo-relevance feedback in hybrid score fusion: the "
        "query vector is expanded with the mean vector of this many leading candidates of "
        "the first fusion and the candidates' cosines are taken again against it (no second "
        "search); 0 turns it off. Measured in docs/ranking.md.")
    feedback_weight: float = Field(
        1.0, ge=0.0, le=10.0, description="Weight of the leading candidates' mean vector "
        "against the query vector in pseudo-relevance feedback.")
    freshness_weight: float = Field(
        0.05, ge=0.0, le=1.0, description="At most this much is added to an item's fused "
        "score for freshness, so recency only reorders items whose relevance is that close.")
    min_relevance: float = Field(
        0.5, ge=0.0, le=1.0, description="Default minimum calibrated relevance of a served "
        "item; a bundle with no item reaching it is found=false (a request may override).")
    relevance_calibration: tuple[float, float, float] = Field(
        (12.0, 2.0, -7.0), description="Logistic calibration of relevance: coefficients of "
        "the dense cosine and of the query-term coverage, and the intercept.")
    freshness_objective_seconds: dict[str, float] = Field(
        default_factory=dict, description="Per source name or kind: a bundle warns when a "
        "source it drew on last synced successfully longer ago than this (default: "
        "quality_lag_objective_seconds).")
    max_request_bytes: int = Field(64 * 1024, ge=1024, description=(
        "Largest request body accepted (413 beyond)."))
    max_query_chars: int = Field(4000, ge=1, description="Longest query accepted (422 beyond).")
    max_token_budget: int = Field(32000, ge=1, description=(
        "Largest token_budget a context request may ask for."))
    max_top_k: int = Field(100, ge=1, description="Largest top_k a context request may ask for.")
    log_level: str = Field("INFO", description="Level of contextd's own log lines.")
    log_queries: bool = Field(False, description=(
        "Keep query text with served bundles (the dashboard's request pages show it); off: "
        "only a hash."))
    telemetry_enabled: bool = Field(True, description=(
        "Prometheus metrics and per-stage timings of every request."))
    otlp_endpoint: str | None = Field(None, description=(
        "OTLP/HTTP endpoint that receives traces; unset: spans are not exported."))
    trace_console: bool = Field(False, description="Print spans to the console (debugging).")
    scheduler_enabled: bool = Field(True, description=(
        "Whether a process of role all or worker queues the scheduled runs that come due "
        "(requested runs run either way)."))
    role: Literal["all", "api", "worker"] = Field("all", description=(
        "all: one process serves the API and runs syncs (the embedded default); api: the "
        "HTTP API only, sync requests are queued for workers; worker: schedules and syncs, "
        "with health and metrics on worker_port. api and worker need database_url and "
        "qdrant_url (see docs/deployment.md)."))
    worker_port: int = Field(8081, ge=1, le=65535, description=(
        "Port of a worker's /healthz, /readyz and /metrics."))
    sync_workers: int = Field(4, ge=1, le=64, description=(
        "Syncs one process runs at once; queued runs wait for a free one."))
    sync_wait_seconds: float = Field(600.0, gt=0.0, description=(
        "How long POST /v1/connectors/{id}/sync?wait=true on an api replica waits for a "
        "worker to finish the run."))
    sync_poll_seconds: float = Field(1.0, gt=0.0, le=60.0, description=(
        "How often an idle worker looks for runs queued by other processes."))
    sync_retry_attempts: int = Field(5, ge=1, le=50, description=(
        "Attempts of a failing source request within one run, with backoff."))
    sync_retry_initial_seconds: float = Field(1.0, ge=0.0, description="First backoff delay.")
    sync_retry_max_seconds: float = Field(60.0, ge=0.0, description="Longest backoff delay.")
    sync_lease_ttl_seconds: float = Field(30.0, ge=3.0, description=(
        "Lifetime of a run's lease; renewed while it runs, so a crashed worker's connector "
        "is free again after this long."))
    schedule_refresh_seconds: float = Field(2.0, gt=0.0, le=300.0, description=(
        "How often a worker reads the connectors table and queues the scheduled runs due."))
    quality_regression_threshold: float = Field(0.05, gt=0.0, le=1.0, description=(
        "A metric of an eval run that falls more than this below the baseline is a "
        "regression."))
    quality_webhook_url: SecretStr | None = Field(None, description=(
        "URL that receives a POST per regression; often carries a token, so never echoed."))
    quality_lag_objective_seconds: float = Field(86400.0, gt=0.0, description=(
        "Freshness objective: a connector whose last success is older is behind."))
    dashboard_session_hours: float = Field(8.0, gt=0.0, le=24 * 30, description=(
        "How long a dashboard login lasts."))
    memory_database_url: str | None = Field(None, description=(
        "Separate database for interactions and entity facts; unset: the state database."))
    interaction_ttl_days: float | None = Field(365.0, gt=0, description=(
        "Interactions older than this are purged; unset: kept forever."))
    memory_purge_interval_seconds: int = Field(3600, ge=0, description=(
        "How often the purge runs; 0: never in the background (``contextd memory purge``)."))
    memory_token_share: float = Field(0.25, ge=0.0, le=1.0, description=(
        "Largest share of a bundle's token budget that recalled memory may take."))
    memory_top_k: int = Field(5, ge=0, le=50, description="Most interactions recalled per bundle.")
    memory_min_relevance: float = Field(0.35, ge=-1.0, le=1.0, description=(
        "Least cosine similarity for an interaction to be recalled."))
    memory_half_life_days: float = Field(30.0, gt=0, description=(
        "Freshness half-life of recalled interactions."))
    memory_freshness_floor: float = Field(0.5, ge=0.0, le=1.0, description=(
        "Lowest freshness factor of recalled interactions."))
    max_interaction_chars: int = Field(8000, ge=1, description=(
        "Longest query or summary of a recorded interaction."))
    db_outage_grace_seconds: float = Field(60.0, ge=0, description=(
        "Through a database outage, keys and principals read this recently are still used; "
        "anything else fails closed."))
    fact_attributes: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FACT_ATTRIBUTES.items()},
        description="CRM fields kept as temporal facts, per object type; JSON object.")
    redis_url: str | None = Field(None, description=(
        "Redis for rate limits shared by API replicas; unset: limits per process."))
    rate_limit_per_minute: int = Field(6000, ge=1, description=(
        "Requests per minute per key (a key's policy can set its own)."))
    rate_limit_burst: int = Field(200, ge=1, description="Requests a key may make at once.")
    key_rotation_grace_seconds: int = Field(86400, ge=0, description=(
        "How long a rotated-out key secret keeps working."))
    audit_query_text: bool = Field(False, description=(
        "Keep query text in the audit log; off: only its hash."))
    redact_default_patterns: bool = Field(True, description=(
        "Mask card numbers, US social security and UK national insurance numbers in "
        "served text."))
    redact_patterns: dict[str, str] = Field(default_factory=dict, description=(
        "More patterns to mask: name -> regular expression; JSON object."))
    # Sources: where configured connectors may reach (docs/security.md "Sources").
    outbound_allow: list[str] = Field(default_factory=list, description=(
        "Hosts (``api.example.com``, ``*.example.com``), addresses and CIDR ranges that "
        "connectors may connect to. Empty: any host except link-local and cloud metadata "
        "addresses and this service's own listener; set: only these (listing a refused "
        "address or range lets it through)."))
    filesystem_allowed_roots: list[Path] = Field(default_factory=list, description=(
        "Directories under which filesystem, mail and CRM export connectors (and SQLite "
        "source files) configured through the API may read; resolved with symlinks "
        "followed. Empty: no such connector can be configured. The command line's "
        "``contextd ingest PATH`` is not limited (the operator names the path)."))
    database_timeout_seconds: float = Field(5.0, gt=0, le=600, description=(
        "Longest a SQL statement may run (PostgreSQL statement_timeout), a connection "
        "attempt may take, and a request waits for a pooled connection; a frozen server is "
        "cut off one second later. The request then gets a 503 (or items without memory)."))
    database_retry_seconds: float = Field(2.0, ge=0, le=300, description=(
        "After the database failed to answer, how long new connections fail fast before "
        "one is tried again."))
    # Consistency of the vector store with the SQL documents (docs/security.md).
    consistency_check_seconds: float = Field(300.0, ge=0, description=(
        "How often SQL documents are reconciled with the vector store (counts and a "
        "sample of ids); 0 checks only at start."))
    consistency_sample: int = Field(200, ge=0, le=100_000, description=(
        "Live documents whose chunk ids are looked up in the store at each check."))
    auto_rebuild: bool = Field(True, description=(
        "Re-embed the affected connectors from their sources when the store is missing "
        "or behind the SQL documents."))
    # Hard limits on the API side: key binding, request bodies, dashboard logins
    require_bound_agent_keys: bool = Field(False, description=(
        "Refuse to create agent keys that are not bound to users (policy user_ids or "
        "group), and refuse every request of one that exists (403)."))
    max_json_depth: int = Field(32, ge=2, le=10_000, description=(
        "Deepest nesting of arrays and objects a JSON request body may have; deeper is a "
        "400 before any parser recurses on it."))
    login_attempts_per_minute: int = Field(5, ge=1, le=10_000, description=(
        "Dashboard login attempts allowed per client address and per key id within a "
        "minute (a bucket refilling over the minute); past it, 429 with Retry-After."))
    trusted_proxies: list[str] = Field(default_factory=list, description=(
        "Addresses or CIDR ranges of reverse proxies whose X-Forwarded-Proto and "
        "X-Forwarded-For are believed (session cookies are Secure behind TLS; login "
        "throttling counts the real client). Empty: forwarded headers are ignored."))

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("half_life_days")
    @classmethod
    def _known_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds in half_life_days: {sorted(unknown)}")
        if any(v <= 0 for v in value.values()):
            raise ValueError("half_life_days values must be > 0")
        return {**DEFAULT_HALF_LIFE_DAYS, **value}

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redact_patterns[{name!r}] is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

    @property
    def sql_url(self) -> str:
        """The SQL database: ``database_url`` or a SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'contextd.db'}"

    @property
    def memory_sql_url(self) -> str:
        """Where interactions and entity facts live: ``memory_database_url`` or ``sql_url``."""
        return self.memory_database_url or self.sql_url

    @property
    def edge_path(self) -> Path:
        """Where the embedded Qdrant Edge shard lives."""
        return self.data_dir / "edge" / self.collection


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
