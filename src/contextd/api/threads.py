"""Blocking work (SQL, the engine, the model) off the event loop, on one plain pool.

Starlette's ``run_in_threadpool`` goes through anyio (backend sniffing, a capacity limiter,
a cancel scope per call): measurable on the hot path of ``POST /v1/context``, which makes
two such hops per request. ``loop.run_in_executor`` with a copied context does the same
job (request id and trace context still reach the thread) for less.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="contextd-api")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` on the API pool with the caller's context variables."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)
