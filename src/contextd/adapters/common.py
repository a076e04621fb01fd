"""What both adapters share: the request they send and the metadata each item carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contextd.api.schemas import ContextResponse, ItemOut


@dataclass(frozen=True)
class RetrievalOptions:
    """The context request an adapter sends for each query (None: the service default;
    ``user_id`` may be None for a key bound to one user)."""

    user_id: str | None = None
    token_budget: int | None = None
    top_k: int | None = None
    kinds: Sequence[str] | None = None
    sources: Sequence[str] | None = None
    session_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def request(self, query: str) -> dict[str, Any]:
        return {"query": query, "user_id": self.user_id, "token_budget": self.token_budget,
                "top_k": self.top_k, "kinds": self.kinds, "sources": self.sources,
                "session_id": self.session_id, **self.extra}


def item_metadata(bundle: ContextResponse, item: ItemOut) -> dict[str, Any]:
    """The citation and provenance of one item, as framework metadata."""
    return {"citation": item.citation, "source": item.source, "source_id": item.source_id,
            "ref": f"{item.source}:{item.source_id}", "kind": item.kind, "title": item.title,
            "uri": item.uri, "updated_at": item.updated_at, "relevance": item.relevance,
            "superseded": item.superseded, "item_id": item.id,
            "bundle_id": bundle.bundle_id}
