"""A throwaway database on the machine's real PostgreSQL, dropped after the test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from contextd.state.db import make_engine, migrate

# CONTEXTD_TEST_PG points the suite at another server (its database is only used to connect).
ADMIN_URL = os.environ.get("CONTEXTD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"
                           ).replace("postgresql://", "postgresql+psycopg://", 1)


def _admin():  # type: ignore[no-untyped-def]
    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


@contextmanager
def scratch_database(prefix: str = "ctx3a") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (forcing sessions off)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - only when the server is down
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required: {exc}")
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def service_engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """The service's own engine and schema on ``backend``: ``sqlite`` (a file in
    ``tmp_path``) or ``postgresql`` (a scratch database); disposed afterwards."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'contextd.db'}" if backend == "sqlite"
               else stack.enter_context(scratch_database()))
        engine = make_engine(url)
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()
