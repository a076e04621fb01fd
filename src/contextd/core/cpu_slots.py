"""A bound on the request threads that run Python at once.

Why: a request's work here is Python under one interpreter lock. With 32 requests in
flight on 32 threads, each thread that wants the lock wakes every switch interval and asks
the holder to hand it over, so the lock moves between threads that evict each other's
caches: measured with 32 clients, a request's CPU in the API threads rose from about 10 ms
(one client) to about 18 ms, its system time threefold (docs/performance.md). A thread
holds a slot while it runs and gives it up while it waits for something that does not need
this interpreter (the model, in its own process), so a few threads keep the lock busy and
the rest sleep on the slots instead of contending for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CpuSlots:
    """At most ``slots`` threads inside :meth:`held` at once; 0 means no bound."""

    def __init__(self, slots: int) -> None:
        if slots < 0:
            raise ValueError("slots must be >= 0")
        self.slots = slots
        self._semaphore = threading.BoundedSemaphore(slots) if slots else None
        self._local = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Run the block holding a slot (waiting for one if all are taken). Re-entrant: a
        thread that already holds a slot does not take a second."""
        if self._semaphore is None or getattr(self._local, "held", False):
            yield
            return
        self._semaphore.acquire()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self._semaphore.release()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Give this thread's slot up for the block (a wait on another process), then take
        one again. A no-op for a thread that holds no slot."""
        if self._semaphore is None or not getattr(self._local, "held", False):
            yield
            return
        self._local.held = False
        self._semaphore.release()
        try:
            yield
        finally:
            self._semaphore.acquire()
            self._local.held = True
