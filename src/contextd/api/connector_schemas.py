"""Bodies of ``/v1/connectors`` (issue 3). Config secrets are only ever served masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from contextd.api.schemas import Strict
from contextd.sync.specs import AclOverride, ScheduleSpec


class ConnectorIn(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Unique; the `source` of every record it ingests.")
    kind: str = Field(min_length=1, max_length=50, description="A registered connector kind.")
    config: dict[str, Any] = Field(description="The kind's config; secret fields write-only.")
    schedule: ScheduleSpec | None = Field(None, description="Absent: runs on demand only.")
    acl: AclOverride | None = None
    enabled: bool = True


class ConnectorPatch(Strict):
    config: dict[str, Any] | None = Field(
        None, description="Fields to change; a secret sent as '********' is kept.")
    schedule: ScheduleSpec | None = None
    acl: AclOverride | None = None
    enabled: bool | None = None


class StatusOut(BaseModel):
    state: str = Field(description="healthy | failing | paused | pending (never ran)")
    running: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    lag_seconds: float | None = Field(description="Seconds since the last successful run.")
    last_error: str | None
    next_run_at: datetime | None
    quarantined: int


class ConnectorOut(BaseModel):
    id: str
    name: str
    kind: str
    config: dict[str, Any]
    schedule: dict[str, Any] | None
    acl: dict[str, Any] | None
    enabled: bool
    created_at: datetime
    updated_at: datetime
    status: StatusOut


class RunOut(BaseModel):
    id: str
    connector_id: str
    trigger: str
    status: str = Field(description="running | success | partial | failed | interrupted")
    started_at: datetime
    finished_at: datetime | None
    records_pulled: int
    chunks_embedded: int
    skipped_unchanged: int
    deleted: int
    quarantined: int
    batches: int
    attempts: int
    error_code: str | None
    error: str | None


class RunQueuedOut(BaseModel):
    connector_id: str
    status: str = "queued"


class QuarantineOut(BaseModel):
    source_id: str
    error: str
    payload: str
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime


class DeletedOut(BaseModel):
    id: str
    name: str
    documents_purged: int
