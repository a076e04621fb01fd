"""Command-line tools through the running service that owns the embedded data directory.

Each function does over the service's API what the command would otherwise do on the
store directly, prints the same JSON, and says on stderr where the work was done.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from contextd.core.errors import ContextdError, NotFound, Unavailable
from contextd.process.discovery import RunningService

_TIMEOUT = httpx.Timeout(10.0, read=None)  # a sync or an ingest takes as long as it takes


class ServiceError(ContextdError):
    """The service answered with an error body; its code and message are kept."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = code


def _client(service: RunningService) -> httpx.Client:
    return httpx.Client(base_url=service.url, timeout=_TIMEOUT,
                        headers={"Authorization": f"Bearer {service.token}"})


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the service at {client.base_url} did not answer: {exc}") from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "http_error", "message": response.text[:500]}
        raise ServiceError(str(error.get("code")), str(error.get("message")),
                           error.get("details"))
    return response.json()


def _say(service: RunningService, what: str) -> None:
    print(f"{what} through the running service at {service.url} (pid {service.pid}), "
          "which owns this data directory", file=sys.stderr)


def sync(service: RunningService, name: str) -> dict[str, Any]:
    """Run the connector named ``name`` now in the service; the finished run."""
    with _client(service) as client:
        found = [c for c in _call(client, "GET", "/v1/connectors") if c["name"] == name]
        if not found:
            raise NotFound(f"connector named {name!r} not found")
        run: dict[str, Any] = _call(client, "POST",
                                    f"/v1/connectors/{found[0]['id']}/sync?wait=true")
    _say(service, f"ran connector {name!r}")
    return run


def ingest(service: RunningService, *, path: str, kind: str, name: str | None,
           config: dict[str, Any]) -> dict[str, Any]:
    """Ingest ``path`` through the ``kind`` connector in the service."""
    with _client(service) as client:
        out: dict[str, Any] = _call(client, "POST", "/v1/admin/ingest", json={
            "path": path, "connector": kind, "name": name, "config": config})
    _say(service, f"ingested {path}")
    return out


def quality_check(service: RunningService, *, names: list[str], mode: str,
                  freshness: bool, token_budget: int = 2000) -> list[dict[str, Any]]:
    """Run golden sets (``names``, or every set) against the service's live index."""
    with _client(service) as client:
        refs = names or [g["id"] for g in _call(client, "GET", "/v1/golden-sets")]
        runs = []
        for ref in refs:
            run = _call(client, "POST", "/v1/eval/runs", json={
                "golden_set": ref, "config": {"mode": mode, "freshness": freshness,
                                           "token_budget": token_budget}})
            run.pop("per_query", None)
            runs.append(run)
    _say(service, f"ran {len(runs)} golden set(s)")
    return runs
