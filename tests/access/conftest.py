"""Fixtures for the access tests: SQL engines on SQLite and on a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from contextd.core.logging import configure_logging
from contextd.memory.db import create_schema, make_engine
from tests.pg import scratch_database


@pytest.fixture(scope="session", autouse=True)
def _json_logs_on_the_session_stream() -> None:
    """Attach contextd's log handler now, to the session's stdout, so that a test using
    ``capsys`` (the CLI) does not leave it writing to a stream closed after that test."""
    configure_logging("INFO")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named database on the local PostgreSQL, dropped afterwards."""
    with scratch_database("ctxd_access") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The service's engine on both supported databases."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'access.db'}"
        engine = make_engine(url)
        create_schema(engine)
        yield engine
        engine.dispose()
        return
    pg = request.getfixturevalue("pg_url")
    engine = make_engine(pg)
    create_schema(engine)
    yield engine
    engine.dispose()
