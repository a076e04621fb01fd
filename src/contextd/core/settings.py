"""One settings class for the whole service, read from ``CONTEXTD_*`` environment variables.

Reach it through :func:`get_settings` (cached) so tests can pass their own ``Settings``
instead of patching the environment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

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

    data_dir: Path = Path(".contextd")
    url: str | None = Field(
        None, description="Address of a running service, for the command line's admin "
        "commands (`contextd keys list`, `contextd connectors ...`); default "
        "http://<host>:<port>.")
    api_key: SecretStr | None = Field(
        None, description="The admin key those commands send; never logged.")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    database_url: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    collection: str = "contextd"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_document_job_chunks: int = Field(16, ge=1, le=4096, description=(
        "Most chunks per document job on the model thread. A query waits behind at most "
        "one such job, so smaller jobs mean shorter waits for queries during a sync."))
    embedding_document_job_chars: int = Field(2000, ge=1, description=(
        "Most characters per document job (a job holds at least one chunk): about 500 "
        "model tokens, so a job of long chunks is as short to wait for as one of short "
        "chunks (about 0.1-0.3 s on two cores)."))
    embedding_query_batch: int = Field(64, ge=1, le=1024, description=(
        "Most queries embedded in one forward pass: the queries waiting when the model "
        "thread comes free share it."))
    embedding_threads: int | None = None
    # torch threads for one query's embedding (documents use embedding_threads / all cores)
    embedding_query_threads: int = Field(1, ge=1)
    # threads of the Edge shard's search pool (per-segment reads in parallel); None: one per
    # CPU. 1 by default: see README "Performance" (on two cores the pool's idle threads
    # slowed the request's own Python after each search, and one thread searched as fast)
    edge_search_threads: int | None = Field(1, ge=1, le=256)
    chunk_size: int = Field(200, ge=32, le=4096)
    chunk_overlap: int = Field(20, ge=0, le=1024)
    freshness_floor: float = Field(0.75, ge=0.0, le=1.0)
    half_life_days: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_HALF_LIFE_DAYS))
    prefetch_limit: int = Field(100, ge=10, le=2000)
    rrf_k: int = Field(60, ge=1, le=1000)
    near_duplicate_cosine: float = Field(0.97, gt=0.0, le=1.0)
    max_request_bytes: int = Field(64 * 1024, ge=1024)
    max_query_chars: int = Field(4000, ge=1)
    max_token_budget: int = Field(32000, ge=1)
    max_top_k: int = Field(100, ge=1)
    log_level: str = "INFO"
    log_queries: bool = False
    telemetry_enabled: bool = True
    otlp_endpoint: str | None = None
    trace_console: bool = False
    # issue 3: connector schedules and runs
    scheduler_enabled: bool = True
    sync_workers: int = Field(4, ge=1, le=64)
    sync_retry_attempts: int = Field(5, ge=1, le=50)
    sync_retry_initial_seconds: float = Field(1.0, ge=0.0)
    sync_retry_max_seconds: float = Field(60.0, ge=0.0)
    sync_lease_ttl_seconds: float = Field(30.0, ge=3.0)
    schedule_refresh_seconds: float = Field(30.0, ge=1.0)
    # issue 6: context quality
    quality_regression_threshold: float = Field(0.05, gt=0.0, le=1.0)
    quality_webhook_url: SecretStr | None = None  # often carries a token: never echoed
    quality_lag_objective_seconds: float = Field(86400.0, gt=0.0)
    dashboard_session_hours: float = Field(8.0, gt=0.0, le=24 * 30)
    # issue 5: memory of past interactions and temporal entity facts
    memory_database_url: str | None = None
    interaction_ttl_days: float | None = Field(365.0, gt=0)
    memory_purge_interval_seconds: int = Field(3600, ge=0)
    memory_token_share: float = Field(0.25, ge=0.0, le=1.0)
    memory_top_k: int = Field(5, ge=0, le=50)
    memory_min_relevance: float = Field(0.35, ge=-1.0, le=1.0)
    memory_half_life_days: float = Field(30.0, gt=0)
    memory_freshness_floor: float = Field(0.5, ge=0.0, le=1.0)
    max_interaction_chars: int = Field(8000, ge=1)
    # Through a database outage, keys and principals read this recently are still used.
    db_outage_grace_seconds: float = Field(60.0, ge=0)
    fact_attributes: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FACT_ATTRIBUTES.items()})
    # issue 4: keys, rate limits, audit, redaction
    redis_url: str | None = None
    rate_limit_per_minute: int = Field(6000, ge=1)
    rate_limit_burst: int = Field(200, ge=1)
    key_rotation_grace_seconds: int = Field(86400, ge=0)
    audit_query_text: bool = False
    redact_default_patterns: bool = True
    redact_patterns: dict[str, str] = Field(default_factory=dict)
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
    # Consistency of the vector store with the SQL documents (docs/security.md).
    consistency_check_seconds: float = Field(300.0, ge=0, description=(
        "How often SQL documents are reconciled with the vector store (counts and a "
        "sample of ids); 0 checks only at start."))
    consistency_sample: int = Field(200, ge=0, le=100_000, description=(
        "Live documents whose chunk ids are looked up in the store at each check."))
    auto_rebuild: bool = Field(True, description=(
        "Re-embed the affected connectors from their sources when the store is missing "
        "or behind the SQL documents."))

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
