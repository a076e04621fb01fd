"""Fixtures for connector tests: one private Dovecot for the session, a folder per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.imap_server import DovecotServer

ERIN = "erin@northwind.example"
BOB = "bob@northwind.example"
USERS = {ERIN: "s3cret-erin", BOB: "s3cret-bob"}


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(USERS) as server:
        yield server


@pytest.fixture
def mailbox(dovecot: DovecotServer, request: pytest.FixtureRequest) -> str:
    """A fresh folder per test, so tests share the server but not their mail."""
    folder = f"T{abs(hash(request.node.nodeid)) % 10**8}"
    conn = dovecot.client(ERIN)
    try:
        conn.create(f'"{folder}"')
    finally:
        conn.logout()
    return folder
