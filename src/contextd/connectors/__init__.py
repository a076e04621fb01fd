"""One module per source kind, a small Connector protocol, and a registry of kinds.

To add a kind: write ``connectors/<kind>.py`` with a class that has ``kind``, a pydantic
``Config`` (a :class:`ConnectorConfig`) and ``check``/``pull``/``list_ids``, then add it to
``registry.CONNECTORS``.
"""

from contextd.connectors.base import Connector, ConnectorConfig
from contextd.connectors.crm_export import CrmExportConnector
from contextd.connectors.email import MaildirConnector, MboxConnector
from contextd.connectors.filesystem import FilesystemConnector
from contextd.connectors.registry import CONNECTORS, build_connector, get_connector_class

__all__ = [
    "CONNECTORS",
    "Connector",
    "ConnectorConfig",
    "CrmExportConnector",
    "FilesystemConnector",
    "MaildirConnector",
    "MboxConnector",
    "build_connector",
    "get_connector_class",
]
