"""Kind name -> connector class, and config validation with errors that name the field."""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from contextd.connectors.base import Connector
from contextd.connectors.crm_export import CrmExportConnector
from contextd.connectors.email import MaildirConnector, MboxConnector
from contextd.connectors.filesystem import FilesystemConnector
from contextd.connectors.hubspot import HubSpotConnector
from contextd.connectors.imap import ImapConnector
from contextd.connectors.limits import SourceLimits
from contextd.connectors.salesforce import SalesforceConnector
from contextd.connectors.sql import SqlConnector
from contextd.core.errors import ConfigError

CONNECTORS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (FilesystemConnector, MboxConnector, MaildirConnector, CrmExportConnector,
                SqlConnector, ImapConnector, HubSpotConnector, SalesforceConnector)
}


def get_connector_class(kind: str) -> type[Any]:
    """The class registered for ``kind``, or ConfigError listing the known kinds."""
    try:
        return CONNECTORS[kind]
    except KeyError:
        raise ConfigError(f"unknown connector kind {kind!r}; known kinds: {sorted(CONNECTORS)}",
                          details=[{"field": "kind", "message": "unknown kind"}]) from None


def validation_details(exc: ValidationError, prefix: str = "config") -> list[dict[str, str]]:
    """Pydantic errors as ``[{"field": "config.acl.0.principals", "message": ...}]``."""
    return [{"field": ".".join([prefix, *(str(p) for p in err["loc"])]), "message": err["msg"]}
            for err in exc.errors()]


@runtime_checkable
class Reaching(Protocol):
    """A connector that reads a path or connects to a host named in its config."""

    def targets(self) -> list[tuple[str, str, Any]]:
        """``(config field, "path" | "url" | "host", value)`` for each place it reaches."""
        ...


def build_connector(name: str, kind: str, config: dict[str, Any],
                    limits: SourceLimits | None = None) -> Connector:
    """Validate ``config`` for ``kind`` and build the connector; ConfigError names the field.

    With ``limits`` (connectors configured through the API), every path and host the
    config names is checked, and connections made later are checked again.
    """
    cls = get_connector_class(kind)
    if not isinstance(config, dict):
        raise ConfigError("config must be an object",
                          details=[{"field": "config", "message": "expected an object"}])
    try:
        parsed = cls.Config.model_validate(config)
    except ValidationError as exc:
        details = validation_details(exc)
        fields = ", ".join(d["field"] for d in details)
        raise ConfigError(f"invalid {kind} config: {fields}", details=details) from None
    extra: dict[str, Any] = {}
    if limits is not None and "outbound" in inspect.signature(cls).parameters:
        extra["outbound"] = limits.outbound
    connector: Connector = cls(name, parsed, **extra)
    if limits is not None and isinstance(connector, Reaching):
        try:
            limits.admit(connector.targets())
        except ConfigError:
            close = getattr(connector, "close", None)
            if close is not None:
                close()
            raise
    return connector
