"""What an admin sets on a connector besides its kind config: schedule and ACL override."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contextd.connectors.filesystem import valid_principals
from contextd.sync.scheduler import cron_trigger


class ScheduleSpec(BaseModel):
    """Exactly one of ``interval_seconds`` or ``cron`` (five fields, UTC)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    interval_seconds: int | None = Field(None, ge=1, le=31 * 24 * 3600)
    cron: str | None = Field(None, min_length=1, max_length=200)
    jitter_seconds: int = Field(0, ge=0, le=3600)
    misfire_grace_seconds: int | None = Field(None, ge=1, le=7 * 24 * 3600, description=(
        "Ignored: a late run waits in the queue until a worker is free; none is discarded."))

    @field_validator("cron", mode="after")
    @classmethod
    def _valid_cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_interval = info.data.get("interval_seconds") is not None
        if value is None:
            if not has_interval and "interval_seconds" not in info.data:
                return None  # interval_seconds itself failed validation; that error is enough
            if not has_interval:
                raise ValueError("give interval_seconds or cron")
            return None
        if has_interval:
            raise ValueError("give interval_seconds or cron, not both")
        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"not a valid crontab expression: {exc}") from None
        return value


class AclOverride(BaseModel):
    """Principals set on every record of the connector: ``replace`` its ACL or ``add``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["replace", "add"] = "replace"
    principals: list[str] = Field(min_length=1)

    @field_validator("principals")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return valid_principals(value)
