"""How the dashboard prints numbers (the browser test formats API values the same way)."""

from __future__ import annotations

NONE = "n/a"


def ratio(value: float | None) -> str:
    return NONE if value is None else f"{value:.3f}"


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} ms"


def days(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} d"


def duration(seconds: float | None) -> str:
    """Seconds in the largest unit that keeps the number readable."""
    if seconds is None:
        return NONE
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def signed(value: float | None) -> str:
    return NONE if value is None else f"{value:+.3f}"
