"""Write-only secrets in connector configs.

A field is secret when its type is ``SecretStr`` (or it says
``json_schema_extra={"secret": True}``). Secrets are stored as given, served as ``MASK``,
and a config sent back with ``MASK`` (or without the field, on PATCH) keeps the stored value
unless the PATCH also moves the connector to another endpoint (see
:func:`check_endpoint_binding`).
"""

from __future__ import annotations

import typing
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from contextd.core.errors import ConfigError

MASK = "********"


def _mentions_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(arg) for arg in typing.get_args(annotation))


def secret_fields(config_cls: type[BaseModel]) -> set[str]:
    """Top-level field names of ``config_cls`` that hold secrets."""
    found = set()
    for name, info in config_cls.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if _mentions_secret(info.annotation) or extra.get("secret") is True:
            found.add(name)
    return found


def mask_config(config_cls: type[BaseModel], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every set secret replaced by ``MASK``."""
    hidden = secret_fields(config_cls)
    return {k: (MASK if k in hidden and v not in (None, "") else v) for k, v in config.items()}


def merge_config(config_cls: type[BaseModel], stored: dict[str, Any],
                 patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a PATCH: given fields replace stored ones; a secret sent as ``MASK`` is kept."""
    hidden = secret_fields(config_cls)
    merged = dict(stored)
    for key, value in patch.items():
        if key in hidden and value == MASK:
            continue
        merged[key] = value
    return merged


def _endpoint(value: Any) -> Any:
    """What identifies where a value points: scheme, host and port of a URL, else itself."""
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.scheme.split("+", 1)[0].lower(), (parts.hostname or "").lower(), port
    return value.lower().rstrip(".") if isinstance(value, str) else value


def check_endpoint_binding(config_cls: type[BaseModel], stored: dict[str, Any],
                           patch: dict[str, Any]) -> None:
    """ConfigError naming the field when a PATCH moves the connector to another endpoint
    (host, base URL, port) while a stored secret would follow it there unsent.

    Secrets are bound to the endpoint they were given for: whoever can edit a connector
    but does not know its token must not be able to send that token to a host of their
    choosing. Re-entering every stored secret with the new endpoint is accepted.
    """
    fields: tuple[str, ...] = getattr(config_cls, "endpoint_fields", ())
    hidden = secret_fields(config_cls)
    moved = [f for f in fields if f in patch and patch[f] != MASK
             and _endpoint(patch[f]) != _endpoint(stored.get(f))]
    if not moved:
        return
    kept = sorted(f for f in hidden if stored.get(f) not in (None, "")
                  and (f not in patch or patch[f] == MASK))
    kept += sorted(f for f in moved if f in hidden and isinstance(patch[f], str)
                   and urlsplit(patch[f]).password == MASK)
    if kept:
        field = moved[0]
        message = (f"changing {field} needs the secrets again ({', '.join(kept)}): "
                   "stored secrets are only sent to the endpoint they were given for")
        raise ConfigError(f"config.{field}: {message}",
                          details=[{"field": f"config.{field}", "message": message}])
