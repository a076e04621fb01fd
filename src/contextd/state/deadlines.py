"""Every PostgreSQL call answers within a deadline, even when the server stops answering.

``statement_timeout`` (set per connection) ends slow statements on the server, and
``connect_timeout`` bounds a connection attempt; neither helps when the server (or the
network to it) is frozen: the statement sits in a socket read that never returns. So a
watchdog thread also times each statement (and the pool's liveness ping) on the client;
one that outlives ``deadline`` gets its socket shut down, which makes the driver raise a
disconnect (``OperationalError``: a 503, and the last-known-good fallbacks) at once.

After such a cut, or a connection attempt that timed out, the engine fails fast for
``cooldown`` seconds: new connections are refused without a network round trip, so one
request waits for the deadline at most once instead of once per query. Then one attempt
goes through again. A refused connection or a dropped one fails fast by itself and does
not start the cooldown, so a restarted server is used at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

NO_DEADLINE = "contextd_no_deadline"  # connection.info flag: migrations may run long


class DatabaseDown(Exception):
    """Raised by the driver hook while the engine fails fast (wrapped as OperationalError)."""


class Watchdog:
    """Cuts the sockets of statements that outlive their deadline; one thread per engine."""

    def __init__(self, deadline: float, cooldown: float) -> None:
        self.deadline = deadline
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._down_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="contextd-sql-watchdog",
                                        daemon=True)
        self._thread.start()

    @contextmanager
    def armed(self, dbapi_connection: Any) -> Iterator[None]:
        self.arm(dbapi_connection)
        try:
            yield
        finally:
            self.disarm(dbapi_connection)

    def arm(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._armed[id(dbapi_connection)] = (time.monotonic() + self.deadline,
                                                 dbapi_connection)

    def disarm(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._armed.pop(id(dbapi_connection), None)

    def trip(self) -> None:
        """Fail fast for ``cooldown`` seconds (the server did not answer)."""
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown

    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                overdue = [(k, c) for k, (at, c) in self._armed.items() if at <= now]
                for key, _ in overdue:
                    del self._armed[key]
            for _, connection in overdue:
                self.trip()
                _cut(connection)


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down so a read blocked on it returns now."""
    try:
        fd = dbapi_connection.pgconn.socket
        dup = socket.socket(fileno=os.dup(fd))
    except Exception:  # already closed: nothing is waiting on it
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()
    log.warning("database statement cut at its deadline", extra={
        "event": "database_deadline"})


def install(engine: Engine, *, deadline: float, cooldown: float) -> Watchdog:
    """Time every statement and ping of ``engine`` (a PostgreSQL engine)."""
    watchdog = Watchdog(deadline, cooldown)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any,
                executemany: bool) -> None:
        if not conn.info.get(NO_DEADLINE):
            watchdog.arm(conn.connection.dbapi_connection)

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any,
               executemany: bool) -> None:
        watchdog.disarm(conn.connection.dbapi_connection)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and not connection.closed:
            dbapi = getattr(connection.connection, "dbapi_connection", None)
            if dbapi is not None:
                watchdog.disarm(dbapi)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        if watchdog.down():
            import psycopg

            raise psycopg.OperationalError("the database did not answer moments ago; "
                                           "failing fast until it does")
        try:
            return dialect.loaded_dbapi.connect(*cargs, **cparams)
        except Exception as exc:
            if "timeout" in str(exc).lower():  # the server accepted but did not answer
                watchdog.trip()
            raise

    ping = engine.dialect.do_ping

    def timed_ping(dbapi_connection: Any) -> bool:
        with watchdog.armed(dbapi_connection):
            return bool(ping(dbapi_connection))

    engine.dialect.do_ping = timed_ping  # type: ignore[method-assign]

    @event.listens_for(engine, "engine_disposed")
    def _disposed(_engine: Any) -> None:
        watchdog.stop()

    return watchdog
