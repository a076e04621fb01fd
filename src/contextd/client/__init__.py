"""Python client of the contextd HTTP API, sync and async, on httpx.

    from contextd.client import Client
    with Client("http://127.0.0.1:8080", api_key="ctxd_...") as ctx:
        bundle = ctx.context("renewal terms for Acme", user_id="alice")
        for item in bundle.items:
            print(item.citation)
"""

from contextd.client.errors import (
    AuthError,
    ContextdAPIError,
    NotFoundError,
    RateLimitError,
    UnavailableError,
    ValidationError,
)
from contextd.client.transport import AsyncClient, Client

__all__ = ["AsyncClient", "AuthError", "Client", "ContextdAPIError", "NotFoundError",
           "RateLimitError", "UnavailableError", "ValidationError"]
