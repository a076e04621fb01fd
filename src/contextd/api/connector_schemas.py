"""Bodies of ``/v1/connectors`` and ``/v1/connector-kinds``.

The create body is a union by ``kind``: each registered kind contributes a variant whose
``config`` is that kind's own config model, so OpenAPI documents every field and FastAPI
rejects a bad one with a 422 that names it. Config secrets are only ever served masked.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, SecretStr, create_model

from contextd.api.errors import UNION_TAGS
from contextd.api.schemas import Strict
from contextd.connectors.registry import CONNECTORS
from contextd.sync.specs import AclOverride, ScheduleSpec


class ConnectorInBase(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Unique; the `source` of every record it ingests.")
    schedule: ScheduleSpec | None = Field(None, description="Absent: runs on demand only.")
    acl: AclOverride | None = None
    enabled: bool = True
    if TYPE_CHECKING:  # declared by each variant (see _variant) with its own Literal
        kind: str

    def raw_config(self) -> dict[str, Any]:
        """The config as sent (secrets in clear, for storage), without unsent defaults."""
        config: BaseModel = getattr(self, "config")  # noqa: B009 (each variant declares it)
        return _plain(config.model_dump(exclude_unset=True))


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _variant(kind: str, cls: type[Any]) -> type[ConnectorInBase]:
    tag: Any = Literal[kind]
    model: type[ConnectorInBase] = create_model(
        f"{cls.__name__}In", __base__=ConnectorInBase,
        __doc__=f"A `{kind}` connector: {(cls.__doc__ or '').strip().splitlines()[0]}",
        kind=(tag, Field(description="The connector kind.")),
        config=(cls.Config, Field(description=f"The `{kind}` config; secrets write-only.")))
    return model


VARIANTS: dict[str, type[ConnectorInBase]] = {kind: _variant(kind, cls)
                                              for kind, cls in CONNECTORS.items()}
UNION_TAGS.update(VARIANTS)
if TYPE_CHECKING:  # every variant is a ConnectorInBase; the union is built at run time
    ConnectorIn = ConnectorInBase
else:
    ConnectorIn = Annotated[Union[tuple(VARIANTS.values())],  # noqa: UP007
                            Field(discriminator="kind")]


class ConnectorKindOut(BaseModel):
    kind: str
    description: str = Field(description="What the kind reads.")
    secrets: list[str] = Field(description="Config fields that are write-only (served masked).")
    config_schema: dict[str, Any] = Field(description="JSON schema of the kind's `config`.")


class ConnectorPatch(Strict):
    config: dict[str, Any] | None = Field(
        None, description="Fields to change; a secret sent as '********' is kept.")
    schedule: ScheduleSpec | None = None
    acl: AclOverride | None = None
    enabled: bool | None = None


class StatusOut(BaseModel):
    state: str = Field(description="healthy | failing | paused | pending (never ran)")
    running: bool
    sync: str = Field(description="idle | queued (waiting for a worker) | running")
    queue_position: int | None = Field(description=(
        "Place of its queued run in the whole queue, 1 = next (also while one runs)."))
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
    request_id: str
    status: str = Field("queued", description="queued: waiting for a worker")
    queue_position: int | None = Field(None, description="1 = next to run.")


class QuarantineOut(BaseModel):
    source_id: str
    error: str
    fields: list[str] = Field(description="Field names of the raw record (as far as the "
                                          "stored excerpt shows them).")
    payload: str | None = Field(description="The raw record excerpt: admins only (null for "
                                            "other roles), as it may hold restricted text.")
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime


class DeletedOut(BaseModel):
    id: str
    name: str
    documents_purged: int
