"""Writes that run after the response is sent (bundles served, costs).

The response has already gone out, so an error here cannot become an error response; a
database outage is logged and the record dropped instead of tearing down the connection.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec

from sqlalchemy.exc import SQLAlchemyError

P = ParamSpec("P")
log = logging.getLogger(__name__)


def best_effort(fn: Callable[P, None]) -> Callable[P, None]:
    """``fn``, with database errors logged (``event: background_write_failed``)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            log.warning("post-response write failed; record dropped",
                        extra={"event": "background_write_failed", "task": fn.__name__,
                               "error": type(exc).__name__})

    return run
