"""The vector store's consistency with the SQL documents, and its rebuild progress.

Admins only: the report names sources and counts. ``/readyz`` says only up or down and
why, for probes that carry no key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from contextd.api.deps import AdminKey, RuntimeDep

router = APIRouter(prefix="/v1/store", tags=["store"])


@router.get("/consistency", responses={401: {}, 403: {}})
def store_consistency(runtime: RuntimeDep, admin: AdminKey) -> dict[str, Any]:
    """The last check (per source: documents, chunks SQL names, points stored) and the
    rebuild's progress per source."""
    return runtime.consistency.status()


@router.post("/consistency/check", responses={401: {}, 403: {}})
def check_store_consistency(runtime: RuntimeDep, admin: AdminKey) -> dict[str, Any]:
    """Check now (a missing or behind store starts a rebuild, as the schedule would)."""
    runtime.consistency.check()
    return runtime.consistency.status()
