"""Memory tests run on both backends: a SQLite file and the real PostgreSQL server on this
machine (127.0.0.1:5432), in a database created for the test and dropped after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from contextd.core.types import SourceRecord
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.pg import scratch_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped (connections and all) after the test."""
    with scratch_database("contextd_i5") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The SQL URL of one backend; every memory test runs once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def mem_runtime(make_runtime: Callable[..., Runtime], db_url: str) -> Runtime:
    """A runtime whose SQL state lives on the backend under test."""
    return make_runtime(database_url=db_url)


@pytest.fixture
def mem_server(mem_runtime: Runtime) -> Iterator[LiveServer]:
    """The app over real HTTP on the backend under test."""
    with LiveServer(mem_runtime) as server:
        yield server


def deal(stage: str, updated_at: datetime, *, amount: int = 1_200_000,
         acl: tuple[str, ...] = ("user:alice", "group:sales")) -> SourceRecord:
    """The Acme renewal deal as the CRM exports it at one point in time."""
    fields = {"id": "D-101", "name": "Acme renewal 2026", "account_id": "A-001",
              "stage": stage, "amount": amount, "owner": "alice", "team": "sales",
              "updated_at": updated_at.isoformat()}
    return SourceRecord(
        source="crm", source_id="deal:D-101", kind="crm", title="Deal: Acme renewal 2026",
        text=f"Deal Acme renewal 2026 with Acme Logistics. Stage: {stage}. "
             f"Amount: {amount}. Owner: alice (sales team).",
        updated_at=updated_at, acl=acl, uri="crm://crm/deal:D-101", author="alice",
        entity_key="deal:D-101", entities=("account:A-001",), fields=fields)
