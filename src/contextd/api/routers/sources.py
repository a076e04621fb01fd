"""``/v1/sources``: the sources an agent's user may see, and whole documents behind citations.

Both answer within the caller's scope (key policy and the user's ACL) applied inside the
engine query; a document the caller may not see answers exactly like a missing one (404).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path

from contextd.api.access import context_scope
from contextd.api.binding import UserInQuery
from contextd.api.deps import AgentKey, RuntimeDep
from contextd.api.source_schemas import DocumentOut, SourceOut, SourcesOut
from contextd.api.threads import in_thread
from contextd.core.errors import NotFound
from contextd.core.types import AccessScope
from contextd.retrieval.service import citation
from contextd.retrieval.sources import read_document, visible_sources
from contextd.runtime import Runtime
from contextd.state.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["sources"])

def _scope(runtime: Runtime, key: ApiKey, user_id: str) -> AccessScope:
    return context_scope(runtime.engine, user_id=user_id, key=key.policy, sources=None,
                         kinds=None, outage_grace=runtime.settings.db_outage_grace_seconds)


@router.get("/sources", response_model=SourcesOut, responses={401: {}, 403: {}, 422: {}})
async def list_sources(runtime: RuntimeDep, key: AgentKey, user_id: UserInQuery) -> SourcesOut:
    """Sources ``user_id`` may see through this key, with kinds, item counts and freshness."""

    def build() -> SourcesOut:
        found = visible_sources(runtime.engine, runtime.store, _scope(runtime, key, user_id),
                                runtime.connectors.status)
        return SourcesOut(user_id=user_id, sources=[SourceOut(**asdict(s)) for s in found])

    return await in_thread(build)


@router.get("/sources/{source}/documents/{source_id:path}", response_model=DocumentOut,
            responses={401: {}, 403: {}, 404: {}, 422: {}})
async def get_document(
    source: Annotated[str, Path(min_length=1, max_length=200)],
    source_id: Annotated[str, Path(min_length=1, max_length=1000)],
    runtime: RuntimeDep, key: AgentKey, user_id: UserInQuery,
) -> DocumentOut:
    """The whole current version of a document (all its chunks, in order), if ``user_id``
    may see it through this key; else 404, the same answer as for a missing document."""

    def read() -> DocumentOut:
        doc = read_document(runtime.store, _scope(runtime, key, user_id), source=source,
                            source_id=source_id)
        if doc is None:
            raise NotFound(f"no document {source_id!r} in source {source!r} visible to "
                           f"{user_id!r}", details=[{"field": "source_id"}])
        fields = asdict(doc)
        return DocumentOut(**fields, citation=citation(fields))

    return await in_thread(read)
