"""``/v1/connector-kinds``: what an admin can configure, with each kind's config schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from contextd.api.connector_schemas import ConnectorKindOut
from contextd.api.deps import AdminKey
from contextd.connectors.registry import CONNECTORS
from contextd.connectors.secrets import secret_fields

router = APIRouter(prefix="/v1/connector-kinds", tags=["connectors"])


def kind_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON schema of ``cls.Config`` with every secret field marked ``writeOnly``."""
    schema: dict[str, Any] = cls.Config.model_json_schema()
    for name in secret_fields(cls.Config):
        schema["properties"][name]["writeOnly"] = True
    return schema


def describe(kind: str) -> ConnectorKindOut:
    cls = CONNECTORS[kind]
    return ConnectorKindOut(kind=kind, description=(cls.__doc__ or "").strip().splitlines()[0],
                            secrets=sorted(secret_fields(cls.Config)),
                            config_schema=kind_schema(cls))


@router.get("", response_model=list[ConnectorKindOut], responses={401: {}, 403: {}})
def list_connector_kinds(_: AdminKey) -> list[ConnectorKindOut]:
    """Every registered kind: what it reads, its secret fields and its config schema."""
    return [describe(kind) for kind in sorted(CONNECTORS)]
