"""Small timing helpers: medians and percentiles of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_ms(samples: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {"p50": round(statistics.median(ms), 3), "p95": round(percentile(ms, 95), 3)}
