"""The sync :class:`Client` and the :class:`AsyncClient`: two thin senders of the same
:mod:`contextd.client.calls`, sharing request building, error mapping and the retry rule.

Each endpoint appears in a client as one line (``context = endpoint(calls.context)``), a
descriptor that keeps the builder's signature: ``Client.context(...)`` returns the parsed
answer, ``AsyncClient.context(...)`` an awaitable of it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from contextd.client import calls
from contextd.client.calls import Call
from contextd.client.errors import error_for

P = ParamSpec("P")
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 503})
DEFAULT_URL = "http://127.0.0.1:8080"


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("CONTEXTD_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _request(client: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
    return client.build_request(call.method, call.path, params=dict(call.params) or None,
                                json=call.json)


def retry_delay(response: httpx.Response, attempt: int, max_retries: int,
                max_wait: float) -> float | None:
    """Seconds to wait before retrying ``response``, or None to give up: only 429 and 503,
    after ``Retry-After`` when the service sent one (else 0.5 s doubling)."""
    if response.status_code not in RETRY_STATUSES or attempt >= max_retries:
        return None
    header = response.headers.get("retry-after")
    try:
        wait = float(header) if header is not None else 0.5 * 2 ** attempt
    except ValueError:
        wait = 0.5 * 2 ** attempt
    return min(max(wait, 0.0), max_wait)


def parsed(call: Call[T], response: httpx.Response) -> T:
    """The call's answer, or the service's JSON error raised as an exception."""
    if response.is_success:
        return call.parse(response.json() if response.content else None)
    try:
        body: Any = response.json()
    except ValueError:
        body = {"error": {"code": f"http_{response.status_code}",
                          "message": response.text[:500]}}
    retry_after = response.headers.get("retry-after")
    raise error_for(response.status_code, body,
                    float(retry_after) if retry_after and _is_number(retry_after) else None)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class endpoint(Generic[P, T]):
    """A client attribute that sends ``build(...)``'s call with the owner's transport."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Client]) -> endpoint[P, T]: ...
    @overload
    def __get__(self, obj: Client, owner: type[Client]) -> Callable[P, T]: ...

    def __get__(self, obj: Client | None, owner: type[Client]) -> Any:
        if obj is None:
            return self
        build = self.build

        def send(*args: P.args, **kwargs: P.kwargs) -> T:
            return obj.send(build(*args, **kwargs))

        return send


class async_endpoint(Generic[P, T]):
    """The async twin of :class:`endpoint`: the same builder, awaited."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[AsyncClient]) -> async_endpoint[P, T]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[AsyncClient]
                ) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, obj: AsyncClient | None, owner: type[AsyncClient]) -> Any:
        if obj is None:
            return self
        build = self.build

        def send(*args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
            return obj.send(build(*args, **kwargs))

        return send


class Client:
    """contextd over HTTP, blocking. ``api_key`` defaults to ``CONTEXTD_API_KEY``, ``url``
    to ``CONTEXTD_URL``; 429 and 503 are retried up to ``max_retries`` times, honouring
    ``Retry-After`` (at most ``max_wait`` seconds each). Pass ``transport`` to talk to an
    app in-process (tests, embedding)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 30.0, max_retries: int = 3, max_wait: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 http: httpx.Client | None = None) -> None:
        self.max_retries, self.max_wait = max_retries, max_wait
        self._owned = http is None
        self.http = http or httpx.Client(
            base_url=url or os.environ.get("CONTEXTD_URL") or DEFAULT_URL,
            headers=_headers(api_key), timeout=timeout, transport=transport)

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response = self.http.send(_request(self.http, call))
            wait = retry_delay(response, attempt, self.max_retries, self.max_wait)
            if wait is None:
                return parsed(call, response)
            response.close()
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    context = endpoint(calls.context)
    sources = endpoint(calls.sources)
    document = endpoint(calls.document)
    record_interaction = endpoint(calls.record_interaction)
    interactions = endpoint(calls.interactions)
    feedback = endpoint(calls.feedback)
    connectors = endpoint(calls.connectors)
    connector = endpoint(calls.connector)
    create_connector = endpoint(calls.create_connector)
    sync_connector = endpoint(calls.sync_connector)
    connector_runs = endpoint(calls.connector_runs)
    delete_connector = endpoint(calls.delete_connector)
    list_keys = endpoint(calls.list_keys)
    create_key = endpoint(calls.create_key)
    revoke_key = endpoint(calls.revoke_key)
    quality = endpoint(calls.quality)
    quality_timeseries = endpoint(calls.quality_timeseries)


class AsyncClient:
    """contextd over HTTP for asyncio; the same endpoints and rules as :class:`Client`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 30.0, max_retries: int = 3, max_wait: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.max_retries, self.max_wait = max_retries, max_wait
        self._owned = http is None
        self.http = http or httpx.AsyncClient(
            base_url=url or os.environ.get("CONTEXTD_URL") or DEFAULT_URL,
            headers=_headers(api_key), timeout=timeout, transport=transport)

    async def send(self, call: Call[T], *, headers: dict[str, str] | None = None) -> T:
        return parsed(call, await self.send_raw(call, headers=headers))

    async def send_raw(self, call: Call[Any], *,
                       headers: dict[str, str] | None = None) -> httpx.Response:
        """The final response of ``call`` (after retries), unparsed; ``headers`` override
        the client's (the MCP server forwards each caller's own key this way)."""
        attempt = 0
        while True:
            request = _request(self.http, call)
            if headers:
                request.headers.update(headers)
            response = await self.http.send(request)
            wait = retry_delay(response, attempt, self.max_retries, self.max_wait)
            if wait is None:
                return response
            await response.aclose()
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    context = async_endpoint(calls.context)
    sources = async_endpoint(calls.sources)
    document = async_endpoint(calls.document)
    record_interaction = async_endpoint(calls.record_interaction)
    interactions = async_endpoint(calls.interactions)
    feedback = async_endpoint(calls.feedback)
    connectors = async_endpoint(calls.connectors)
    connector = async_endpoint(calls.connector)
    create_connector = async_endpoint(calls.create_connector)
    sync_connector = async_endpoint(calls.sync_connector)
    connector_runs = async_endpoint(calls.connector_runs)
    delete_connector = async_endpoint(calls.delete_connector)
    list_keys = async_endpoint(calls.list_keys)
    create_key = async_endpoint(calls.create_key)
    revoke_key = async_endpoint(calls.revoke_key)
    quality = async_endpoint(calls.quality)
    quality_timeseries = async_endpoint(calls.quality_timeseries)
