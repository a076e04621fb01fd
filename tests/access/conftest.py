"""Fixtures for the access tests: SQL engines on SQLite and on a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from contextd.core.logging import configure_logging
from tests.pg import service_engine


@pytest.fixture(scope="session", autouse=True)
def _json_logs_on_the_session_stream() -> None:
    """Attach contextd's log handler now, to the session's stdout, so that a test using
    ``capsys`` (the CLI) does not leave it writing to a stream closed after that test."""
    configure_logging("INFO")


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The service's engine on both supported databases."""
    with service_engine(request.param, tmp_path) as engine:
        yield engine
