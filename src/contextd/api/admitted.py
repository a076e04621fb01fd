"""Bearer tokens that recently passed authentication, as a hint for starting work early.

``POST /v1/context`` starts embedding the query before the key is checked (the model is
most of a request's time, and the key check, the body validation and two thread hops can
run beside it) but only for a token this process has admitted lately. This is never an
authentication cache: every request is still checked in full against the database before
anything is served, and a failed check drops the token. It only keeps a caller without a
valid key from spending model time.

Only keyed digests are held (BLAKE2b under a per-process random key), never the tokens.
Accessed on the event loop only.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict

_PROCESS_KEY = os.urandom(32)


class RecentlyAdmitted:
    """Token digest -> (role, expiry), bounded; the oldest are dropped first."""

    def __init__(self, ttl_seconds: float = 300.0, max_entries: int = 4096) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.blake2b(token.encode(), key=_PROCESS_KEY, digest_size=16).digest()

    def note(self, token: str, role: str) -> None:
        """``token`` just passed authentication as a key of ``role``."""
        digest = self._digest(token)
        self._entries[digest] = (role, time.monotonic() + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, token: str) -> None:
        """``token`` failed a check (unknown, revoked, expired, rate-limited)."""
        self._entries.pop(self._digest(token), None)

    def role_of(self, token: str) -> str | None:
        """The role ``token`` was last admitted with, if that was within the TTL."""
        digest = self._digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        role, expires = entry
        if expires < time.monotonic():
            del self._entries[digest]
            return None
        return role
