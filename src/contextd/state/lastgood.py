"""Last known good answers of the database, for riding out a brief outage.

Authentication and the principals directory are read from SQL on every request. When the
database cannot be reached (``OperationalError``), a value that was read successfully at
most ``grace`` seconds ago is used instead, so agents keep getting context (with
``memory_status: "unavailable"``) through a short outage. Nothing is ever served from here
while the database answers, so revocations and group changes still apply on the next
request; during an outage they can lag by at most ``grace`` seconds (0 turns this off).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from typing import Generic, TypeVar

from sqlalchemy.engine import Engine

K = TypeVar("K")
V = TypeVar("V")


class LastKnownGood(Generic[K, V]):
    """Per-engine, bounded (LRU) map of values with the monotonic time they were read."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, OrderedDict[K, tuple[V, float]]] = \
            weakref.WeakKeyDictionary()

    def remember(self, engine: Engine, key: K, value: V) -> None:
        with self._lock:
            entries = self._by_engine.setdefault(engine, OrderedDict())
            entries[key] = (value, time.monotonic())
            entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def recall(self, engine: Engine, key: K, grace: float) -> V | None:
        """The value read at most ``grace`` seconds ago, else None."""
        if grace <= 0:
            return None
        with self._lock:
            found = self._by_engine.get(engine, OrderedDict()).get(key)
        if found is None or time.monotonic() - found[1] > grace:
            return None
        return found[0]

    def forget(self, engine: Engine, key: K) -> None:
        with self._lock:
            self._by_engine.get(engine, OrderedDict()).pop(key, None)
