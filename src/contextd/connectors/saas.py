"""What the HubSpot and Salesforce connectors share: config basics, ACLs, text rendering."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from contextd.connectors.base import ConnectorConfig
from contextd.connectors.filesystem import valid_principals
from contextd.connectors.http import RetryPolicy
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone, utcnow


class SaasConfig(ConnectorConfig):
    """Retry policy and the ACL used when a record names no owner (empty: fail closed)."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy,
        description="Retries of failing API requests (backoff, Retry-After).")
    default_acl: list[str] = Field(default_factory=list,
        description="Principals of records that name no owner; empty: such records are not served.")
    # Changes newer than this are read again next run: late commits and index lag.
    settle_seconds: int = Field(default=60, ge=0, le=86_400,
        description="Changes newer than this are read again next run (late commits, index lag).")

    @field_validator("default_acl")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return valid_principals(value)


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
# The API base URLs: http(s), printable ASCII (hosts in IDNA form), a host part.
URL_PATTERN = r"^https?://[\x21-\x7e]+$"


def header_safe(value: SecretStr | None) -> SecretStr | None:
    """A token sent in an HTTP header: printable ASCII, no spaces (else ValueError)."""
    if value is not None and not _HEADER_SAFE.fullmatch(value.get_secret_value()):
        raise ValueError("must be printable ASCII without spaces (sent in an HTTP header)")
    return value


def http_url(value: str) -> str:
    """An http(s) URL with a host (else ValueError): checked on create, not on first run."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL with a host")
    return value


def settled_before(config: SaasConfig) -> datetime:
    """The latest time a persisted watermark may hold for a pull starting now."""
    return utcnow() - timedelta(seconds=config.settle_seconds)


def refetched(name: str, requested: Sequence[str],
              pages: Iterable[tuple[list[SourceRecord], list[RecordFailure]]]) -> Batch:
    """A ``fetch`` answer: the records and failures read again by id, and a tombstone for
    each requested id the source no longer returns (deleted or archived there)."""
    records: list[SourceRecord] = []
    failures: list[RecordFailure] = []
    for found, failed in pages:
        records.extend(found)
        failures.extend(failed)
    seen = {r.source_id for r in records} | {f.source_id for f in failures}
    gone = [Tombstone(name, source_id) for source_id in requested if source_id not in seen]
    return Batch(records=records, tombstones=gone, failures=failures)


def group_name(name: str) -> str:
    """A team or role name as a principal id: ``Enterprise Sales`` -> ``enterprise-sales``."""
    return re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")


def owner_acl(user: str | None, group: str | None, default: Sequence[str]) -> tuple[str, ...]:
    """``user:<owner>`` + ``group:<team>``, else the default; ValueError rather than guess."""
    acl = [p for p in (f"user:{user}" if user else "", f"group:{group_name(group)}"
                       if group and group_name(group) else "") if p]
    if not acl:
        if not default:
            raise ValueError("record has neither owner nor team and no default_acl is "
                             "configured: refusing to guess its ACL")
        acl = list(default)
    return tuple(acl)


def describe(fields: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """``Label: value.`` for each labelled field that has a value, in label order."""
    parts = []
    for key, label in labels.items():
        value = fields.get(key)
        if value not in (None, "", []):
            parts.append(f"{label}: {str(value).strip().rstrip('.')}.")
    return " ".join(parts)
