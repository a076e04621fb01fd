"""``contextd serve [--role all|api|worker]`` and ``contextd worker``.

- ``all`` (default): one process serves the API and runs the sync workers and schedules,
  on the embedded store and SQLite unless configured otherwise. It migrates the schema
  first and, on the embedded store, announces itself to local tools (``discovery``).
- ``api``: the HTTP API only; ``POST .../sync`` queues runs for workers. Stateless, so
  any number of replicas run behind a load balancer.
- ``worker``: schedules and syncs (document embedding), with ``/healthz``, ``/readyz``
  and ``/metrics`` on ``worker_port``.

``api`` and ``worker`` share state through PostgreSQL and a Qdrant server; they never
migrate, and refuse to start on a database that ``contextd migrate`` has not brought to
this version's schema.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType

from contextd.core.errors import ConfigError
from contextd.core.settings import Settings

ROLES = ("all", "api", "worker")


def check_role(settings: Settings) -> None:
    """ConfigError unless the role can run on these settings."""
    if settings.role == "all":
        return
    missing = [name for name, value in (("CONTEXTD_DATABASE_URL", settings.database_url),
                                        ("CONTEXTD_QDRANT_URL", settings.qdrant_url))
               if not value]
    if missing:
        raise ConfigError(
            f"role {settings.role!r} shares state with other processes, so it needs "
            f"{' and '.join(missing)}: the embedded store and the SQLite file belong to one "
            "process (run `contextd serve` without --role for that)",
            details={"role": settings.role, "missing": missing})


def serve(settings: Settings, *, role: str | None, host: str | None,
          port: int | None) -> int:
    """Run the process of ``role`` until stopped."""
    import uvicorn

    from contextd.api.app import create_app
    from contextd.api.proxies import server_options
    from contextd.process.discovery import announce
    from contextd.process.migrate import migrate_databases

    role = role or settings.role
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    default_port = settings.worker_port if role == "worker" else settings.port
    settings = settings.model_copy(update={"role": role, "host": host or settings.host,
                                           "port": port or default_port})
    check_role(settings)
    if role == "all":
        migrate_databases(settings)
    else:
        require_schemas(settings)
    app = create_app(settings)
    exit_on_sigterm()
    with contextlib.ExitStack() as stack:
        if role == "all" and not settings.qdrant_url:
            app.state.local_token = stack.enter_context(
                announce(settings, host=settings.host, port=settings.port))
        # log_config=None: uvicorn's lines go through contextd's formatter (core.logging).
        # Forwarded headers only from CONTEXTD_TRUSTED_PROXIES (uvicorn trusts loopback).
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    log_config=None, **server_options(settings.trusted_proxies))
    return 0


def require_schemas(settings: Settings) -> None:
    """ConfigError (run ``contextd migrate``) unless every database is at this version's
    schema, checked before anything starts."""
    from contextd.state.db import make_engine, require_schema

    for url in dict.fromkeys((settings.sql_url, settings.memory_sql_url)):
        engine = make_engine(url)
        try:
            require_schema(engine)
        finally:
            engine.dispose()


def exit_on_sigterm() -> None:
    """uvicorn stops on SIGTERM, then raises it again under the handler found at start: a
    plain exit there lets the service files (``discovery.announce``) be removed."""
    signal.signal(signal.SIGTERM, _exit)


def _exit(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)
