"""SQLModel tables for service state. Datetimes are stored as UTC and end in ``_at``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, Column, DateTime, Index, event
from sqlmodel import Field, SQLModel

from contextd.core.types import utcnow


class DocumentRow(SQLModel, table=True):
    """What is stored for one source record: its hash, version and chunk ids.

    ``doc_hash`` covers text, title, ACL and metadata, so an unchanged record is skipped
    without chunking; ``chunk_ids`` lets a changed record drop exactly its old chunks.
    """

    __tablename__ = "documents"

    source: str = Field(primary_key=True, max_length=200)
    source_id: str = Field(primary_key=True, max_length=1000)
    kind: str = Field(max_length=20, index=True)
    title: str = ""
    uri: str = ""
    entity_key: str = Field(default="", index=True)
    doc_hash: str = Field(max_length=64)
    version: int = 1
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ingested_at: datetime = Field(default_factory=utcnow,
                                  sa_column=Column(DateTime(timezone=True), nullable=False))
    deleted: bool = Field(default=False, index=True)
    acl: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    chunk_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))

class GroupMember(SQLModel, table=True):
    """Membership edge: ``member`` (``user:<id>`` or ``group:<id>``) belongs to ``group_id``.

    Groups may contain groups; effective principals are resolved transitively.
    """

    __tablename__ = "group_members"

    group_id: str = Field(primary_key=True, max_length=200)
    member: str = Field(primary_key=True, max_length=210, index=True)
    origin: str = Field(default="api", max_length=200)

class UserRow(SQLModel, table=True):
    """A known user of the principals directory."""

    __tablename__ = "users"

    user_id: str = Field(primary_key=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))

class ApiKeyRow(SQLModel, table=True):
    """An API key: only a SHA-256 of its secret is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    secret_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class ConnectorCursor(SQLModel, table=True):
    """The last checkpointed cursor of a connector, written after every ingested batch."""

    __tablename__ = "connector_cursors"

    name: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=50)
    cursor: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))


class CostEvent(SQLModel, table=True):
    """What one context request or one sync run cost: embedding tokens, CPU, tokens served.

    Daily totals are sums of these rows, so per-request costs always add up to them.
    """

    __tablename__ = "cost_events"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    day: str = Field(max_length=10, index=True)
    kind: str = Field(max_length=20, index=True)  # "context" or "sync"
    connector: str | None = Field(default=None, max_length=200, index=True)
    agent: str | None = Field(default=None, max_length=200, index=True)
    ref: str = Field(default="", max_length=64)  # bundle id or sync run id
    embed_tokens: int = 0
    embed_cpu_seconds: float = 0.0
    served_tokens: int = 0


class BundleServed(SQLModel, table=True):
    """One context bundle as served: who asked, what came back, how long it took.

    The quality metrics (accuracy, freshness, accessibility, completeness) and memory
    recall read these rows; ``items`` keeps each item's id, source, source_id, kind,
    doc_version, updated_at and score so accuracy can be checked against the documents
    table later, and under ``ranking`` the numbers behind its rank (no text) for the
    dashboard's request page. The query text is kept only when ``log_queries`` allows;
    its hash always.
    """

    __tablename__ = "bundles_served"

    bundle_id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))
    key_id: str = Field(default="", max_length=32, index=True)
    agent: str = Field(default="", max_length=200, index=True)
    user_id: str = Field(max_length=200, index=True)
    session_id: str | None = Field(default=None, max_length=200, index=True)
    query_hash: str = Field(max_length=64)
    query: str | None = None
    kinds_requested: list[str] = Field(default_factory=list,
                                       sa_column=Column(JSON, nullable=False))
    items: list[dict[str, Any]] = Field(default_factory=list,
                                        sa_column=Column(JSON, nullable=False))
    token_budget: int = 0
    token_count: int = 0
    candidates: int = 0
    latency_ms: float = 0.0
    stages_ms: dict[str, float] = Field(default_factory=dict,
                                        sa_column=Column(JSON, nullable=False))


# --- connectors on schedules (connectors, sync runs, quarantine, leases) ---------


class ConnectorRow(SQLModel, table=True):
    """A configured source: its kind, config (secrets included; never served), schedule.

    ``name`` is the ``source`` of every record it ingests, so it is unique and fixed.
    ``schedule`` is ``{"interval_seconds" | "cron", "jitter_seconds"}``
    or empty (run on demand only); ``enabled`` false means paused.
    """

    __tablename__ = "connectors"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=50)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    schedule: dict[str, Any] = Field(default_factory=dict,
                                     sa_column=Column(JSON, nullable=False))
    acl: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))


class SyncRunRow(SQLModel, table=True):
    """One run of a connector; its counters are written after every batch.

    ``status``: running, success, partial (some records quarantined), failed,
    interrupted (the process died; the next run resumed from the checkpoint).
    """

    __tablename__ = "sync_runs"

    id: str = Field(primary_key=True, max_length=32)
    connector_id: str = Field(max_length=32, index=True)
    trigger: str = Field(default="schedule", max_length=20)
    status: str = Field(default="running", max_length=20, index=True)
    started_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    heartbeat_at: datetime = Field(default_factory=utcnow,
                                   sa_column=Column(DateTime(timezone=True), nullable=False))
    records_pulled: int = 0
    chunks_embedded: int = 0
    skipped_unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    batches: int = 0
    attempts: int = 1
    error_code: str | None = Field(default=None, max_length=50)
    error: str | None = None


class QuarantineRow(SQLModel, table=True):
    """A source item that failed to map; kept until a later run ingests or deletes it."""

    __tablename__ = "quarantine"

    connector_id: str = Field(primary_key=True, max_length=32)
    source_id: str = Field(primary_key=True, max_length=1000)
    error: str
    payload: str = ""
    attempts: int = 1
    first_seen_at: datetime = Field(default_factory=utcnow,
                                    sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow,
                                   sa_column=Column(DateTime(timezone=True), nullable=False))


class ConnectorLease(SQLModel, table=True):
    """Row lease that keeps one run per connector at a time on SQLite (Postgres uses an
    advisory lock instead). A holder that dies leaves a lease that expires."""

    __tablename__ = "connector_leases"

    name: str = Field(primary_key=True, max_length=200)
    holder: str = Field(max_length=64)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SyncRequestRow(SQLModel, table=True):
    """A requested run of a connector, queued until a worker claims it.

    ``status``: queued (waiting; its place is its ``requested_at``), running (claimed by
    ``claimed_by``), done (``run_id`` is the run, ``outcome`` its status, or ``skipped``
    when the connector was deleted or paused first). Any process may queue; only workers
    claim, so an API replica never runs a sync itself.
    """

    __tablename__ = "sync_requests"

    id: str = Field(primary_key=True, max_length=64)
    connector_id: str = Field(max_length=32, index=True)
    trigger: str = Field(max_length=20)
    status: str = Field(default="queued", max_length=12, index=True)
    requested_at: datetime = Field(default_factory=utcnow,
                                   sa_column=Column(DateTime(timezone=True), nullable=False,
                                                    index=True))
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    run_id: str | None = Field(default=None, max_length=32)
    outcome: str | None = Field(default=None, max_length=20)


class ScheduleMark(SQLModel, table=True):
    """The latest scheduled fire time queued for a connector: workers advance it with a
    compare-and-set, so each fire is queued once however many workers watch the table."""

    __tablename__ = "schedule_marks"

    connector_id: str = Field(primary_key=True, max_length=32)
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# --- context quality (request outcomes, feedback, golden sets, eval runs) ---------


class ContextRequestRow(SQLModel, table=True):
    """The outcome of every ``POST /v1/context`` call, failures included.

    ``bundles_served`` holds only successful bundles; the error rate and end-to-end latency
    of accessibility need every request, so a middleware appends one row per call.
    """

    __tablename__ = "context_requests"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))
    status: int
    latency_ms: float
    request_id: str = Field(default="", max_length=64)


class GoldenSetRow(SQLModel, table=True):
    """A judged query set: queries and graded relevance of live-index documents.

    Judged ids are ``source_id`` values of the documents table (optionally limited to
    ``sources``), so a run measures the live index, not a copy of it.
    """

    __tablename__ = "golden_sets"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200, unique=True)
    description: str = ""
    origin: str = Field(default="json", max_length=20)  # "json" or "beir"
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    queries: list[dict[str, Any]] = Field(default_factory=list,
                                          sa_column=Column(JSON, nullable=False))
    qrels: dict[str, dict[str, int]] = Field(default_factory=dict,
                                             sa_column=Column(JSON, nullable=False))
    baseline_run_id: str | None = Field(default=None, max_length=32)
    baseline_pinned_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class EvalRunRow(SQLModel, table=True):
    """One evaluation: a golden set (or a ``contextd eval`` dataset) under one configuration.

    ``metrics`` holds the means (ndcg@10, mrr, recall@bundle, ...); ``comparison`` the
    deltas against the golden set's baseline and the regressions that raised alerts.
    """

    __tablename__ = "eval_runs"

    id: str = Field(primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))
    origin: str = Field(default="api", max_length=20)  # "api" or "cli"
    golden_set_id: str | None = Field(default=None, max_length=32, index=True)
    dataset: str = Field(default="", max_length=500)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, float] = Field(default_factory=dict,
                                      sa_column=Column(JSON, nullable=False))
    per_query: list[dict[str, Any]] = Field(default_factory=list,
                                            sa_column=Column(JSON, nullable=False))
    baseline_run_id: str | None = Field(default=None, max_length=32)
    comparison: dict[str, Any] = Field(default_factory=dict,
                                       sa_column=Column(JSON, nullable=False))
    regressed: bool = False
    duration_ms: float = 0.0


class DashboardSession(SQLModel, table=True):
    """A browser login to ``/dashboard``: the cookie holds a random token, only its hash is
    stored, and the key behind it is re-checked (revoked, role) on every page."""

    __tablename__ = "dashboard_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
# --- memory of past interactions, feedback, temporal entity facts -----------------


class InteractionRow(SQLModel, table=True):
    """One past exchange between an agent and a user, recalled into later bundles.

    The same id is the point id of its vector in the memory collection, so forgetting a
    user or purging old rows removes exactly the matching vectors.
    """

    __tablename__ = "interactions"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(max_length=200, index=True)
    agent: str = Field(default="", max_length=200)
    key_id: str = Field(default="", max_length=32)
    session_id: str | None = Field(default=None, max_length=200, index=True)
    query: str
    summary: str = ""
    bundle_id: str | None = Field(default=None, max_length=64, index=True)
    outcome: str | None = Field(default=None, max_length=50)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))


class InteractionEntity(SQLModel, table=True):
    """Which entities (``deal:D-101``, ``account:A-001``) an interaction was about."""

    __tablename__ = "interaction_entities"

    interaction_id: str = Field(primary_key=True, max_length=36,
                                foreign_key="interactions.id", ondelete="CASCADE")
    entity_key: str = Field(primary_key=True, max_length=300, index=True)


class InteractionScope(SQLModel, table=True):
    """The scope an interaction was recorded under: one row per source and per kind of the
    key (and bundle) that produced it; the value ``*`` means "not narrowed".

    A reader sees an interaction only when every stored value lies in the reader's own
    scope, so a summary of CRM or mail content never reaches a key scoped to documents.
    """

    __tablename__ = "interaction_scopes"

    interaction_id: str = Field(primary_key=True, max_length=36,
                                foreign_key="interactions.id", ondelete="CASCADE")
    dimension: str = Field(primary_key=True, max_length=10)  # "source" or "kind"
    value: str = Field(primary_key=True, max_length=200)


class FeedbackRow(SQLModel, table=True):
    """An agent's or user's verdict on a served bundle: rating and the items actually used."""

    __tablename__ = "feedback"

    id: str = Field(primary_key=True, max_length=36)
    bundle_id: str = Field(max_length=64, index=True)
    user_id: str = Field(max_length=200, index=True)
    interaction_id: str | None = Field(default=None, max_length=36, index=True)
    agent: str = Field(default="", max_length=200)
    key_id: str = Field(default="", max_length=32)
    rating: int
    used_item_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    comment: str | None = None
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))


class EntityFact(SQLModel, table=True):
    """One value of one attribute of an entity over ``[valid_from, valid_to)``.

    ``valid_from``/``valid_to`` are the source's own timestamps (the CRM record's
    ``updated_at``), never the ingestion time, which is ``recorded_at``. The open fact
    (``valid_to`` NULL) is the current value. ``acl`` is the record's, so a fact is shown
    only to users who may see the record it came from.
    """

    __tablename__ = "entity_facts"
    __table_args__ = (Index("ix_entity_facts_timeline", "entity_key", "attribute",
                            "valid_from"),)

    id: int | None = Field(default=None, primary_key=True)
    entity_key: str = Field(max_length=300)
    attribute: str = Field(max_length=100)
    value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    valid_from: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    valid_to: datetime | None = Field(default=None,
                                      sa_column=Column(DateTime(timezone=True), nullable=True))
    source: str = Field(max_length=200)
    source_id: str = Field(max_length=1000)
    version: int = 1
    acl: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow,
                                  sa_column=Column(DateTime(timezone=True), nullable=False))


# --- access scope as a hard limit (key policies, rotation, audit log) -----------


class ApiKeyPolicy(SQLModel, table=True):
    """What one API key may see and how much it may ask: its binding to users, its scope,
    rate and output limits.

    ``user_ids`` / ``group`` of None mean "not bound"; otherwise the key acts only for
    those users and the members of that group (see ``state.keys.KeyPolicy``).

    ``sources`` / ``kinds`` of None mean "not narrowed"; a list narrows every request of
    the key (intersected with the request's own filters and the user's ACL). Limits of None
    fall back to the service-wide settings.
    """

    __tablename__ = "api_key_policies"

    key_id: str = Field(primary_key=True, max_length=32)
    sources: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    kinds: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    user_ids: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    group: str | None = Field(default=None, max_length=200)
    rate_per_minute: int | None = None
    burst: int | None = None
    max_token_budget: int | None = None
    max_top_k: int | None = None
    max_request_bytes: int | None = None


class RetiredKeySecret(SQLModel, table=True):
    """A rotated-out secret that still authenticates until ``valid_until`` (the grace period)."""

    __tablename__ = "api_key_retired_secrets"

    secret_hash: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(max_length=32, index=True)
    valid_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AuditEvent(SQLModel, table=True):
    """One append-only audit entry: a context request or an admin action.

    Rows are only ever inserted (``state.audit`` has no update or delete path).
    """

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False,
                                                  index=True))
    action: str = Field(max_length=64, index=True)  # e.g. context.request, key.create
    outcome: str = Field(default="ok", max_length=32, index=True)
    actor_key_id: str = Field(default="", max_length=32, index=True)
    actor: str = Field(default="", max_length=200, index=True)  # the key's name
    user_id: str | None = Field(default=None, max_length=200, index=True)
    target: str | None = Field(default=None, max_length=300)
    query_hash: str | None = Field(default=None, max_length=64)
    query: str | None = None
    item_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    latency_ms: float | None = None
    redactions: int = 0
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# The database itself refuses to change or remove an audit entry, so the log can be shown
# as evidence: nothing in the service (or a stray script) can rewrite it.
_APPEND_ONLY = "audit_log is append-only"
for _statement, _dialect in (
    (f"CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
     f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END", "sqlite"),
    (f"CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
     f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END", "sqlite"),
    (f"CREATE OR REPLACE FUNCTION contextd_audit_append_only() RETURNS trigger AS $$ "
     f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END; $$ LANGUAGE plpgsql", "postgresql"),
    ("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
     "FOR EACH ROW EXECUTE FUNCTION contextd_audit_append_only()", "postgresql"),
):
    event.listen(AuditEvent.__table__, "after_create",  # type: ignore[attr-defined]
                 DDL(_statement).execute_if(dialect=_dialect))
