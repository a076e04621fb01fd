"""``contextd migrate``: the one step that changes the SQL schema.

Serving and worker processes only check that the schema is current and refuse to start
otherwise. The single-process default (``contextd serve``, ``contextd demo``, and the
command-line tools on the default SQLite file in the data directory) runs this itself,
since nothing else shares that file's schema.
"""

from __future__ import annotations

import logging

from contextd.core.settings import Settings
from contextd.runtime import Runtime

log = logging.getLogger(__name__)


def migrate_databases(settings: Settings) -> dict[str, str]:
    """Upgrade every database of ``settings`` to the head revision; revision per URL."""
    done = Runtime(settings).migrate()
    for url, revision in done.items():
        # debug: `contextd demo --keys` output is eval'd by shells; `migrate` prints its result
        log.debug("database migrated", extra={"event": "schema_migrated", "database": url,
                                              "revision": revision})
    return done


def local_runtime(settings: Settings) -> Runtime:
    """A runtime for a command-line tool: on the default SQLite file of the data directory
    the schema is brought up to date first; a shared database (``database_url``) must have
    been migrated with ``contextd migrate``."""
    runtime = Runtime(settings)
    if settings.database_url is None and settings.memory_database_url is None:
        runtime.migrate()
    return runtime
