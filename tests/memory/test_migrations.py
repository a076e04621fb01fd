"""The schema comes from Alembic migrations, and the migrated schema is the models' schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from contextd.core.errors import ConfigError
from contextd.core.settings import Settings
from contextd.runtime import Runtime
from contextd.state.db import alembic_config, make_engine, migrate


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent: a second start changes nothing
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()
    assert _diff(db_url) == [], "models changed without a migration: write a revision"


def test_every_table_is_created_by_a_migration(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
            conn.commit()
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert set(SQLModel.metadata.tables) <= tables


def test_a_database_made_before_migrations_is_adopted(db_url: str) -> None:
    engine = make_engine(db_url)
    legacy = [t for name, t in SQLModel.metadata.tables.items() if name == "documents"]
    SQLModel.metadata.create_all(engine, tables=legacy)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert _diff(db_url) == []


def test_a_process_on_an_unmigrated_database_says_to_run_migrate(db_url: str,
                                                                  tmp_path: Path) -> None:
    """Building the runtime's engine never changes the schema; it refuses with the fix."""
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=db_url))
    with pytest.raises(ConfigError, match="run `contextd migrate` first"):
        _ = runtime.engine
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert "alembic_version" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert set(runtime.migrate().values()) == {
        ScriptDirectory.from_config(alembic_config()).get_current_head()}
    try:
        _ = runtime.engine  # now current: accepted
    finally:
        runtime.close()
