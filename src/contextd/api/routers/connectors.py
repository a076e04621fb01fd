"""``/v1/connectors``: admins configure, run, pause and delete; analysts read runs."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from contextd.api.connector_schemas import (
    ConnectorIn,
    ConnectorOut,
    ConnectorPatch,
    DeletedOut,
    QuarantineOut,
    RunOut,
    RunQueuedOut,
    StatusOut,
)
from contextd.api.deps import AdminKey, ReaderKey, RuntimeDep
from contextd.core.types import as_utc
from contextd.state import audit
from contextd.state.keys import ApiKey
from contextd.state.tables import ConnectorRow, QuarantineRow, SyncRunRow
from contextd.sync.connector_service import ConnectorService, ConnectorStatus

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])
ConnectorId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _utc(row: Any, *names: str) -> dict[str, Any]:
    values = row.model_dump()
    for name in names:
        if values.get(name) is not None:
            values[name] = as_utc(values[name])
    return values


def _out(service: ConnectorService, row: ConnectorRow,
         known: ConnectorStatus | None = None) -> ConnectorOut:
    status = asdict(known or service.status(row))
    for name in ("last_run_at", "last_success_at", "next_run_at"):
        if status[name] is not None:
            status[name] = as_utc(status[name])
    values = _utc(row, "created_at", "updated_at")
    values.update(config=service.public_config(row), schedule=row.schedule or None,
                  status=StatusOut(**status))
    return ConnectorOut(**values)


def _audit(runtime: RuntimeDep, admin: ApiKey, action: str, row: ConnectorRow,
           **details: object) -> None:
    """Record an admin action on a connector in the audit log; config values, which may
    hold secrets, are never put in it, only the names of changed fields."""
    audit.record(runtime.engine, action=action, actor_key_id=admin.id, actor=admin.name,
                 target=f"connector:{row.id}", details={"name": row.name, "kind": row.kind,
                                                        **details})


def _run(run: SyncRunRow) -> RunOut:
    return RunOut(**_utc(run, "started_at", "finished_at"))


# Identifier-like names only: a cut excerpt is not parsed, and text inside a value must not
# pass for a field name.
_FIELD_NAME = re.compile(r'"([A-Za-z_$@][\w.$@-]{0,63})"\s*:')


def payload_fields(raw: str) -> list[str]:
    """The field names of a raw record excerpt: the keys of a JSON object, else (a cut
    excerpt) every identifier-like quoted name followed by a colon. Never values."""
    try:
        value = json.loads(raw)
    except ValueError:
        return sorted(set(_FIELD_NAME.findall(raw)))[:200]
    return sorted(str(k) for k in value)[:200] if isinstance(value, dict) else []


def _quarantined(row: QuarantineRow, *, with_payload: bool) -> QuarantineOut:
    values = _utc(row, "first_seen_at", "last_seen_at")
    values["fields"] = payload_fields(row.payload)
    if not with_payload:
        values["payload"] = None
    return QuarantineOut(**values)


@router.post("", response_model=ConnectorOut, status_code=201,
             responses={401: {}, 403: {}, 409: {}, 422: {}})
def create_connector(body: ConnectorIn, runtime: RuntimeDep, admin: AdminKey) -> ConnectorOut:
    """Validate kind, config, schedule and ACL, then check what can be checked without
    reaching the source (paths exist and have the right type); save only if all pass:
    nothing is saved on a 422. ``GET /v1/connector-kinds`` lists each kind's config."""
    service = runtime.connectors
    row = service.create(name=body.name, kind=body.kind, config=body.raw_config(),
                         schedule=body.schedule.model_dump() if body.schedule else None,
                         acl=body.acl.model_dump() if body.acl else None, enabled=body.enabled)
    _audit(runtime, admin, "connector.create", row, enabled=body.enabled)
    return _out(service, row)


@router.get("", response_model=list[ConnectorOut], responses={401: {}, 403: {}})
def list_connectors(runtime: RuntimeDep, _: ReaderKey) -> list[ConnectorOut]:
    service = runtime.connectors
    rows = service.all()
    return [_out(service, row, status)
            for row, status in zip(rows, service.statuses(rows), strict=True)]


@router.get("/{connector_id}", response_model=ConnectorOut,
            responses={401: {}, 403: {}, 404: {}})
def get_connector(connector_id: ConnectorId, runtime: RuntimeDep,
                  _: ReaderKey) -> ConnectorOut:
    service = runtime.connectors
    return _out(service, service.get(connector_id))


@router.patch("/{connector_id}", response_model=ConnectorOut,
              responses={401: {}, 403: {}, 404: {}, 422: {}})
def patch_connector(connector_id: ConnectorId, body: ConnectorPatch, runtime: RuntimeDep,
                    admin: AdminKey) -> ConnectorOut:
    """Change config (merged), schedule (null: on demand only), ACL override, enabled."""
    given = body.model_dump(include=body.model_fields_set)
    service = runtime.connectors
    row = service.update(connector_id, **given)
    _audit(runtime, admin, "connector.update", row, fields=sorted(given))
    return _out(service, row)


@router.delete("/{connector_id}", response_model=DeletedOut,
               responses={401: {}, 403: {}, 404: {}, 409: {}})
def delete_connector(connector_id: ConnectorId, runtime: RuntimeDep,
                     admin: AdminKey) -> DeletedOut:
    """Remove the connector and purge its documents from the store and SQL."""
    service = runtime.connectors
    row = service.get(connector_id)
    purged = service.delete(connector_id)
    _audit(runtime, admin, "connector.delete", row, documents_purged=purged)
    return DeletedOut(id=row.id, name=row.name, documents_purged=purged)


@router.post("/{connector_id}/pause", response_model=ConnectorOut,
             responses={401: {}, 403: {}, 404: {}})
def pause_connector(connector_id: ConnectorId, runtime: RuntimeDep,
                    admin: AdminKey) -> ConnectorOut:
    service = runtime.connectors
    row = service.update(connector_id, enabled=False)
    _audit(runtime, admin, "connector.pause", row)
    return _out(service, row)


@router.post("/{connector_id}/resume", response_model=ConnectorOut,
             responses={401: {}, 403: {}, 404: {}})
def resume_connector(connector_id: ConnectorId, runtime: RuntimeDep,
                     admin: AdminKey) -> ConnectorOut:
    service = runtime.connectors
    row = service.update(connector_id, enabled=True)
    _audit(runtime, admin, "connector.resume", row)
    return _out(service, row)


@router.post("/{connector_id}/sync", response_model=RunOut | RunQueuedOut,
             responses={202: {"model": RunQueuedOut}, 401: {}, 403: {}, 404: {}, 409: {}})
def sync_connector(connector_id: ConnectorId, runtime: RuntimeDep, response: Response,
                   admin: AdminKey, wait: bool = False) -> RunOut | RunQueuedOut:
    """Run now: queued for a worker (202, with the queue position) by default;
    ``?wait=true`` returns the finished run: the single process (role all) runs it at once
    (409 when a run is already in progress), an API replica waits for a worker to run it
    (503 if none did within ``sync_wait_seconds``)."""
    service = runtime.connectors
    _audit(runtime, admin, "connector.sync", service.get(connector_id), wait=wait)
    role = runtime.settings.role
    if wait and role == "all":
        return _run(service.run_blocking(connector_id))
    request = service.request_run(connector_id)
    if wait:
        return _run(service.wait_for(request.id,
                                     timeout=runtime.settings.sync_wait_seconds))
    if role == "all":
        service.start_workers(schedules=runtime.settings.scheduler_enabled)
    response.status_code = 202
    state = service.status(service.get(connector_id))
    return RunQueuedOut(connector_id=connector_id, request_id=request.id,
                        status=request.status, queue_position=state.queue_position)


@router.get("/{connector_id}/runs", response_model=list[RunOut],
            responses={401: {}, 403: {}, 404: {}})
def list_runs(connector_id: ConnectorId, runtime: RuntimeDep, _: ReaderKey,
              limit: Limit = 50) -> list[RunOut]:
    """Newest first: status, times, records pulled, chunks embedded, unchanged, deleted,
    quarantined, error."""
    return [_run(r) for r in runtime.connectors.runs(connector_id, limit=limit)]


@router.get("/{connector_id}/quarantine", response_model=list[QuarantineOut],
            responses={401: {}, 403: {}, 404: {}})
def list_quarantine(connector_id: ConnectorId, runtime: RuntimeDep, key: ReaderKey,
                    limit: Limit = 500) -> list[QuarantineOut]:
    """Records that failed to map: id, error and field names; the raw excerpt (which may
    hold restricted text) to admins only. Retried on every run."""
    admin = key.role == "admin"
    return [_quarantined(q, with_payload=admin)
            for q in runtime.connectors.quarantine(connector_id, limit=limit)]
