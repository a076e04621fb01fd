"""``/v1/admin/ingest``: load a path on the service's machine through a connector, once.

What ``contextd ingest PATH`` does when a running service owns the embedded store: the
command cannot open the store itself, so the service ingests. Admin only; only the single
process (role ``all``) embeds documents here, an API replica leaves that to workers. Paths
are limited to ``filesystem_allowed_roots`` except for the service's own command line.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from contextd.api.deps import AdminKey, RuntimeDep
from contextd.api.schemas import Strict
from contextd.core.errors import Conflict
from contextd.state import audit

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class IngestIn(Strict):
    path: str = Field(min_length=1, max_length=4096,
                      description="A path on the service's machine, absolute.")
    connector: str = Field(min_length=1, max_length=50, description="A connector kind.")
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="The source name (default: the kind).")
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="Extra connector config.")


class IngestOut(Strict):
    summary: dict[str, Any]
    failures: list[dict[str, str]]


@router.post("/ingest", response_model=IngestOut, responses={401: {}, 403: {}, 409: {},
                                                              422: {}})
def ingest(body: IngestIn, runtime: RuntimeDep, admin: AdminKey) -> IngestOut:
    """Pull ``path`` through the ``connector`` kind once and ingest what it yields."""
    from contextd.connectors.registry import build_connector
    from contextd.process.discovery import LOCAL_ADMIN
    from contextd.runtime import source_limits
    from contextd.sync.pull import run_sync

    if runtime.settings.role != "all":
        raise Conflict("this API replica does not embed documents; configure a connector "
                       "(POST /v1/connectors) and let the workers sync it")
    name = body.name or body.connector
    config = {**body.config, "path": body.path}
    # The service's own command line (its loopback token) may read what the operator names,
    # as `contextd ingest` does without a service; any other admin key stays within
    # the roots and hosts the settings allow.
    limits = None if admin.id == LOCAL_ADMIN.id else source_limits(runtime.settings)
    connector = build_connector(name, body.connector, config, limits)
    try:
        connector.check()
        result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    audit.record(runtime.engine, action="admin.ingest", actor_key_id=admin.id,
                 actor=admin.name, target=f"source:{name}",
                 details={"kind": body.connector, "records": result.stats.records})
    return IngestOut(summary=result.summary(),
                     failures=[{"source_id": f.source_id, "error": f.error}
                               for f in result.failures])
