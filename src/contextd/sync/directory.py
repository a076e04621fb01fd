"""Directory sync: make the memberships a ``groups`` source set equal to its export.

One transaction per run (see :func:`contextd.state.principals.replace_memberships`), so
the directory never shows half an import; removals apply on the very next request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from contextd.connectors.groups import GroupsConnector
from contextd.core.telemetry import span
from contextd.state.principals import replace_memberships

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DirectorySyncResult:
    origin: str
    memberships: int
    added: int
    removed: int


def sync_directory(connector: GroupsConnector, engine: Engine) -> DirectorySyncResult:
    """Read the export and replace what this source (``origin = connector.name``) set."""
    with span("directory.sync", **{"contextd.connector": connector.name}):
        found = connector.memberships()
        added, removed = replace_memberships(
            engine, origin=connector.name, memberships=[(m.group, m.member) for m in found])
    result = DirectorySyncResult(connector.name, len(found), added, removed)
    log.info("directory synced", extra={"event": "directory_sync", "connector": connector.name,
                                        "memberships": len(found), "added": added,
                                        "removed": removed})
    return result
