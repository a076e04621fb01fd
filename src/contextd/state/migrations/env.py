"""Alembic environment for contextd's SQL schema.

Run programmatically by :func:`contextd.state.db.migrate` (which hands over an open
connection in ``config.attributes["connection"]``), or by the ``alembic`` command with the
repository's ``alembic.ini``, where the URL comes from ``CONTEXTD_DATABASE_URL`` (or the
SQLite file in ``CONTEXTD_DATA_DIR``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from contextd.state import tables  # noqa: F401  (registers the tables on the metadata)

target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from contextd.core.settings import get_settings
    from contextd.state.db import make_engine

    engine = make_engine(context.config.get_main_option("sqlalchemy.url")
                         or get_settings().sql_url)
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run()
