"""The outage fallback remembers per engine, for a bounded time and number of entries."""

from __future__ import annotations

import time

from contextd.state.db import make_engine
from contextd.state.lastgood import LastKnownGood


def test_values_expire_stay_per_engine_and_are_bounded() -> None:
    one, two = make_engine("sqlite://"), make_engine("sqlite://")
    cache: LastKnownGood[str, int] = LastKnownGood(max_entries=2)
    cache.remember(one, "a", 1)
    assert cache.recall(one, "a", grace=60) == 1
    assert cache.recall(one, "a", grace=0) is None  # 0 turns the fallback off
    assert cache.recall(two, "a", grace=60) is None  # another database, another answer
    time.sleep(0.06)
    assert cache.recall(one, "a", grace=0.05) is None  # too old
    cache.remember(one, "b", 2)
    cache.remember(one, "c", 3)
    assert cache.recall(one, "a", grace=60) is None  # evicted, least recently read
    cache.forget(one, "c")
    assert cache.recall(one, "c", grace=60) is None
    assert cache.recall(one, "b", grace=60) == 2
