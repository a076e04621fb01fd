"""One run per connector at a time, across threads, processes and replicas.

On PostgreSQL the lease is a session advisory lock held on a dedicated connection: the
server drops it the moment the holder's connection dies, so a killed process never blocks
the next run. SQLite has no such lock, so the lease is a row with an expiry that the
holder renews after every batch; a dead holder's row simply expires.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from contextd.core.types import utcnow
from contextd.memory.tables import ConnectorLease


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` derived from the name."""
    return int.from_bytes(hashlib.sha256(f"contextd:{name}".encode()).digest()[:8], "big",
                          signed=True)


class Lease:
    """A held lease; ``renew`` extends a row lease, ``release`` gives it up (idempotent)."""

    def __init__(self, engine: Engine, name: str, ttl_seconds: float,
                 connection: Connection | None = None) -> None:
        self.engine = engine
        self.name = name
        self.ttl = timedelta(seconds=ttl_seconds)
        self.holder = uuid.uuid4().hex
        self._connection = connection
        self.released = False

    def renew(self) -> None:
        if self._connection is not None or self.released:
            return
        with Session(self.engine) as session:
            session.execute(update(ConnectorLease)
                            .where(col(ConnectorLease.name) == self.name,
                                   col(ConnectorLease.holder) == self.holder)
                            .values(expires_at=utcnow() + self.ttl))
            session.commit()

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._connection is not None:
            try:
                self._connection.exec_driver_sql("SELECT pg_advisory_unlock(%s)",
                                                 (advisory_key(self.name),))
                self._connection.commit()
            finally:
                self._connection.close()
            return
        with Session(self.engine) as session:
            session.execute(delete(ConnectorLease)
                            .where(col(ConnectorLease.name) == self.name,
                                   col(ConnectorLease.holder) == self.holder))
            session.commit()


def try_acquire(engine: Engine, name: str, *, ttl_seconds: float = 600) -> Lease | None:
    """The lease on ``name``, or None when another run holds it."""
    if engine.dialect.name == "postgresql":
        connection = engine.connect()
        try:
            got = connection.exec_driver_sql("SELECT pg_try_advisory_lock(%s)",
                                             (advisory_key(name),)).scalar()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return None
        return Lease(engine, name, ttl_seconds, connection)
    lease = Lease(engine, name, ttl_seconds)
    now = utcnow()
    with Session(engine) as session:
        taken = session.execute(update(ConnectorLease)
                                .where(col(ConnectorLease.name) == name,
                                       col(ConnectorLease.expires_at) < now)
                                .values(holder=lease.holder, expires_at=now + lease.ttl))
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return lease
        session.add(ConnectorLease(name=name, holder=lease.holder, expires_at=now + lease.ttl))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return None
    return lease
