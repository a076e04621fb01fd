"""Engine creation, and the schema by Alembic migrations, for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

from contextd.core.errors import ConfigError
from contextd.state import (
    deadlines,
    tables,  # noqa: F401  (registers the tables on the metadata)
)

log = logging.getLogger(__name__)


def make_engine(url: str, *, timeout: float = 5.0, cooldown: float = 2.0) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so readers never block.

    PostgreSQL gets deadlines (:mod:`contextd.state.deadlines`): ``statement_timeout`` and
    ``connect_timeout`` from ``timeout``, a pool checkout that waits at most ``timeout``,
    and a client-side cut a second later for a server that stopped answering; after a
    cut or a failed connection the engine fails fast for ``cooldown`` seconds.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                           pool_timeout=timeout, connect_args={
                               "connect_timeout": max(1, math.ceil(timeout)),
                               "options": f"-c statement_timeout={int(timeout * 1000)}"})
    if engine.dialect.name == "postgresql":
        deadlines.install(engine, deadline=timeout + 1.0, cooldown=cooldown)
    return engine


MIGRATIONS = "contextd.state:migrations"
INITIAL_REVISION = "0001"
# What the initial revision creates: a pre-migration database is completed up to exactly
# this, so the later revisions then apply to it like to any other database.
INITIAL_TABLES = frozenset({
    "api_keys", "bundles_served", "connector_cursors", "cost_events", "documents",
    "entity_facts", "feedback", "group_members", "interactions", "users",
    "interaction_entities"})
_MIGRATION_LOCK = 0x636F6E74  # PostgreSQL advisory lock key: one migrator across replicas


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the packaged migrations, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> str:
    """Bring the database to the latest schema with Alembic (``upgrade head``), idempotently;
    the revision it is at afterwards.

    This is ``contextd migrate`` (also run by ``contextd serve`` in its single-process
    default and by ``contextd demo``); other processes only check the revision
    (:func:`require_schema`). A database made before migrations existed (tables present, no
    ``alembic_version``) is completed and stamped at the initial revision first, so it
    upgrades like any other. On PostgreSQL an advisory lock makes migrators started together
    run one at a time.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Migrations and the wait for another replica's may take longer than requests.
            connection.info[deadlines.NO_DEADLINE] = True
            connection.execute(text("SET statement_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            connection.commit()
        try:
            config = alembic_config(connection)
            existing = set(inspect(connection).get_table_names())
            if "alembic_version" not in existing and "documents" in existing:
                _adopt_legacy(connection, config)
            command.upgrade(config, "head")
            connection.commit()
            return current_revision(connection) or ""
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                connection.execute(text("RESET statement_timeout"))
                connection.commit()
                connection.info.pop(deadlines.NO_DEADLINE, None)


def head_revision() -> str:
    """The newest revision this code ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head or ""


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def require_schema(engine: Engine) -> None:
    """ConfigError telling to run ``contextd migrate`` unless the database is at the head
    revision: a process never changes the schema as a side effect of starting."""
    with engine.connect() as connection:
        current = current_revision(connection)
    head = head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no contextd schema" if current is None else (
            f"is at schema revision {current}, this version needs {head}")
        raise ConfigError(f"the database {where} {state}: run `contextd migrate` first",
                          details={"revision": current, "head": head})


def _adopt_legacy(connection: Connection, config: Config) -> None:
    """A pre-migration database: create what the initial revision would, then stamp it.

    The one place tables are made from the models rather than a revision: only the initial
    revision's tables, only for a database that predates migrations, only in ``migrate``.
    """
    log.warning("database has no migration history; adopting it at the initial revision",
                extra={"event": "schema_adopt", "revision": INITIAL_REVISION})
    initial = [t for name, t in SQLModel.metadata.tables.items() if name in INITIAL_TABLES]
    SQLModel.metadata.create_all(connection, tables=initial)
    connection.commit()
    command.stamp(config, INITIAL_REVISION)
    connection.commit()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error: nothing half written."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
