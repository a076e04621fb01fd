"""Write-only secrets in connector configs.

A field is secret when its type is ``SecretStr`` (or it says
``json_schema_extra={"secret": True}``). Secrets are stored as given, served as ``MASK``,
and a config sent back with ``MASK`` (or without the field, on PATCH) keeps the stored value.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, SecretStr

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
