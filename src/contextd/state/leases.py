"""One run per connector at a time, across threads, processes and replicas.

On PostgreSQL the lease is a session advisory lock held on a dedicated connection: the
server drops it the moment the holder's connection dies, so a killed process never blocks
the next run. SQLite has no such lock, so the lease is a row with a short expiry that a heartbeat
thread of the holder renews (every third of the TTL); a dead holder's row simply expires,
so a killed run blocks the next one for at most one TTL.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from contextd.core.types import utcnow
from contextd.state.tables import ConnectorLease

log = logging.getLogger(__name__)


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
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _start_heartbeat(self) -> Lease:
        self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                           name=f"lease-{self.name}")
        self._heartbeat.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            try:
                self.renew()
            except Exception as exc:  # the next beat retries; expiry is the safety net
                log.warning("lease renewal failed", extra={"event": "lease",
                                                           "lease": self.name,
                                                           "error": str(exc)})

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
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
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


def try_acquire(engine: Engine, name: str, *, ttl_seconds: float = 30) -> Lease | None:
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
            return lease._start_heartbeat()
        session.add(ConnectorLease(name=name, holder=lease.holder, expires_at=now + lease.ttl))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return None
    return lease._start_heartbeat()
