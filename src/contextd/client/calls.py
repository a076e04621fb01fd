"""The client's one description of the API: each function builds a :class:`Call` (method,
path, query, body and how to read the answer). The sync and async clients only send calls,
so every endpoint is written once, with its signature and types, here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from contextd.api.schemas import (
    ContextResponse,
    FeedbackOut,
    InteractionOut,
    InteractionPageOut,
    KeyCreatedOut,
    KeyOut,
)
from contextd.api.source_schemas import DocumentOut, SourcesOut

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and the parser of its JSON answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None


def _raw(value: Any) -> Any:
    return value


def _none(_: Any) -> None:
    return None


def _given(**fields: Any) -> dict[str, Any]:
    """Only the fields the caller set, so the service's defaults (and a bound key's
    implied user) apply to the rest."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in fields.items() if v is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")


# -- agents ------------------------------------------------------------------------------


def context(query: str, user_id: str | None = None, *, token_budget: int | None = None,
            top_k: int | None = None, kinds: Sequence[str] | None = None,
            sources: Sequence[str] | None = None, as_of: datetime | str | None = None,
            session_id: str | None = None, include_memory: bool | None = None,
            **extra: Any) -> Call[ContextResponse]:
    """``POST /v1/context``: a ranked, access-scoped bundle for ``user_id``'s ``query``.
    ``extra`` passes newer request fields through unchanged."""
    body = _given(query=query, user_id=user_id, token_budget=token_budget, top_k=top_k,
                  kinds=list(kinds) if kinds is not None else None,
                  sources=list(sources) if sources is not None else None, as_of=as_of,
                  session_id=session_id, include_memory=include_memory, **extra)
    return Call("POST", "/v1/context", ContextResponse.model_validate, json=body)


def sources(user_id: str | None = None) -> Call[SourcesOut]:
    """``GET /v1/sources``: what the user may see, with item counts and freshness."""
    return Call("GET", "/v1/sources", SourcesOut.model_validate,
                params=_given(user_id=user_id))


def document(source: str, source_id: str, user_id: str | None = None) -> Call[DocumentOut]:
    """The whole current document behind a citation, if the user may see it."""
    return Call("GET", f"/v1/sources/{_seg(source)}/documents/{_seg(source_id)}",
                DocumentOut.model_validate, params=_given(user_id=user_id))


def record_interaction(query: str, user_id: str | None = None, *, summary: str | None = None,
                       session_id: str | None = None, bundle_id: str | None = None,
                       outcome: str | None = None, entities: Sequence[str] | None = None,
                       created_at: datetime | str | None = None) -> Call[InteractionOut]:
    """``POST /v1/interactions``: remember what was asked and answered."""
    body = _given(user_id=user_id, query=query, summary=summary, session_id=session_id,
                  bundle_id=bundle_id, outcome=outcome,
                  entities=list(entities) if entities is not None else None,
                  created_at=created_at)
    return Call("POST", "/v1/interactions", InteractionOut.model_validate, json=body)


def interactions(user_id: str | None = None, *, session_id: str | None = None,
                 entity: str | None = None, limit: int | None = None,
                 cursor: str | None = None) -> Call[InteractionPageOut]:
    """``GET /v1/interactions``: past interactions, newest first."""
    return Call("GET", "/v1/interactions", InteractionPageOut.model_validate,
                params=_given(user_id=user_id, session_id=session_id, entity=entity,
                              limit=limit, cursor=cursor))


def feedback(bundle_id: str, rating: int, used_item_ids: Sequence[str] = (), *,
             comment: str | None = None, interaction_id: str | None = None,
             ) -> Call[FeedbackOut]:
    """``POST /v1/feedback``: rate a bundle (1-5) and name the items that were used."""
    body = _given(bundle_id=bundle_id, rating=rating, used_item_ids=list(used_item_ids),
                  comment=comment, interaction_id=interaction_id)
    return Call("POST", "/v1/feedback", FeedbackOut.model_validate, json=body)


# -- admins ------------------------------------------------------------------------------


def connectors() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/connectors", _raw)


def connector(connector_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/connectors/{_seg(connector_id)}", _raw)


def create_connector(name: str, kind: str, config: Mapping[str, Any], *,
                     schedule: Mapping[str, Any] | None = None,
                     acl: Mapping[str, Any] | None = None,
                     enabled: bool | None = None) -> Call[dict[str, Any]]:
    body = _given(name=name, kind=kind, config=dict(config), schedule=schedule, acl=acl,
                  enabled=enabled)
    return Call("POST", "/v1/connectors", _raw, json=body)


def sync_connector(connector_id: str) -> Call[dict[str, Any]]:
    """Start a run now (``POST /v1/connectors/{id}/sync``)."""
    return Call("POST", f"/v1/connectors/{_seg(connector_id)}/sync", _raw)


def connector_runs(connector_id: str) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/v1/connectors/{_seg(connector_id)}/runs", _raw)


def delete_connector(connector_id: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/v1/connectors/{_seg(connector_id)}", _raw)


def list_keys() -> Call[list[KeyOut]]:
    return Call("GET", "/v1/keys", lambda body: [KeyOut.model_validate(k) for k in body])


def create_key(name: str, role: str, policy: Mapping[str, Any] | None = None,
               ) -> Call[KeyCreatedOut]:
    """A new key; its secret (``.key``) is in this answer only."""
    return Call("POST", "/v1/keys", KeyCreatedOut.model_validate,
                json=_given(name=name, role=role, policy=dict(policy) if policy else None))


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{_seg(key_id)}", _none)


# -- analysts ----------------------------------------------------------------------------


def quality(hours: int | None = None, end: datetime | str | None = None,
            ) -> Call[dict[str, Any]]:
    """``GET /v1/quality``: the five context quality metrics over a window."""
    return Call("GET", "/v1/quality", _raw, params=_given(hours=hours, end=end))


def quality_timeseries(hours: int | None = None) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/quality/timeseries", _raw, params=_given(hours=hours))
