"""SQLModel tables for service state. Datetimes are stored as UTC and end in ``_at``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index
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
    table later. The query text is kept only when ``log_queries`` allows; its hash always.
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


# --- issue 5: memory of past interactions, feedback, temporal entity facts -----------------


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
