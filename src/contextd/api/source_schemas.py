"""Response bodies of ``/v1/sources``: what an agent's user may see of each source."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SourceOut(BaseModel):
    name: str = Field(description="The source name; pass it in ``sources`` of a request.")
    kinds: list[str] = Field(description="Kinds of record this source holds for the caller.")
    items: int = Field(description="Searchable items (chunks) of this source the caller "
                                   "may see.")
    connector: bool = Field(description="True when a configured connector keeps it in sync.")
    state: str = Field(description="healthy, failing, paused, pending (no run finished yet) "
                                   "or unscheduled (loaded once, not by a connector).")
    last_success_at: datetime | None = Field(description="End of the last successful sync.")
    lag_seconds: float | None = Field(description="Seconds since that sync ended.")
    last_run_at: datetime | None


class SourcesOut(BaseModel):
    user_id: str
    sources: list[SourceOut]


class DocumentOut(BaseModel):
    """The whole current version of one document, as the caller may see it."""

    source: str
    source_id: str
    kind: str
    title: str
    uri: str
    updated_at: str
    doc_version: int
    citation: str
    chunks: int = Field(description="How many stored chunks the text was joined from.")
    text: str
