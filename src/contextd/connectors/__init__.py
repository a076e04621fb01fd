"""One module per source kind, a small Connector protocol, and a registry of kinds.

To add a kind: write ``connectors/<kind>.py`` with a class that has ``kind``, a pydantic
``Config`` and ``check``/``pull``/``list_ids``, then add it to ``registry.CONNECTORS``.
"""

from contextd.connectors.base import Connector
from contextd.connectors.registry import CONNECTORS, build_connector, get_connector_class

__all__ = ["CONNECTORS", "Connector", "build_connector", "get_connector_class"]
