"""Who is asking, and over what: client address and scheme through trusted proxies.

``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed only from a peer listed in
``trusted_proxies``; from anyone else they are ignored (a client could forge them). The
server itself (uvicorn) is given the same list, so it neither rewrites the scheme nor
the client for any other peer (its own default trusts loopback).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fastapi import Request

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _trusted(address: str | None, trusted: Sequence[str]) -> bool:
    if not address or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(trusted)))


def _forwarded(request: Request, name: str) -> list[str]:
    values = request.headers.getlist(name)
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def client_address(request: Request, trusted: Sequence[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    address in ``X-Forwarded-For`` that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, trusted):
        return peer
    for hop in reversed(_forwarded(request, "x-forwarded-for")):
        if not _trusted(hop, trusted):
            return hop
    return peer


def behind_tls(request: Request, trusted: Sequence[str]) -> bool:
    """True when the browser talks HTTPS: to us, or to a trusted proxy that says so."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    proto = _forwarded(request, "x-forwarded-proto")
    return _trusted(peer, trusted) and bool(proto) and proto[0].lower() == "https"


def server_options(trusted: Sequence[str]) -> dict[str, Any]:
    """uvicorn's proxy options for ``trusted`` (no forwarded headers at all when empty)."""
    return {"proxy_headers": bool(trusted),
            "forwarded_allow_ips": ",".join(trusted) if trusted else None}
