"""``contextd keys list|revoke`` and ``contextd connectors ...``: admin commands that go
through the API of a running service (its address from ``CONTEXTD_URL``, default
``http://<host>:<port>``; an admin key from ``CONTEXTD_API_KEY``), so they work against a
service that owns the store, locally or remote, and are audited like any admin call."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from contextd.core.settings import Settings


def service_url(settings: Settings) -> str:
    """Where the running service answers: ``CONTEXTD_URL``, else this machine's host:port."""
    return (settings.url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _client(settings: Settings) -> httpx.Client:
    import httpx

    from contextd.core.errors import ConfigError

    if settings.api_key is None:
        raise ConfigError("set CONTEXTD_API_KEY to an admin key (the demo prints one)",
                          details=[{"field": "CONTEXTD_API_KEY", "message": "not set"}])
    return httpx.Client(base_url=service_url(settings), timeout=600.0, headers={
        "Authorization": f"Bearer {settings.api_key.get_secret_value()}"})


def call(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; the service's error (code, message, details) as a ContextdError."""
    import httpx

    from contextd.core.errors import ContextdError, Unavailable

    try:
        with _client(settings) as client:
            resp = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise Unavailable(f"no contextd service at {service_url(settings)} ({exc}); start "
                          "one with `contextd serve` or set CONTEXTD_URL") from None
    if resp.status_code >= 400:
        try:
            error = resp.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "http_error", "message": resp.text[:200], "details": []}
        failure = ContextdError(f"{resp.status_code} {error['message']}",
                                details=error.get("details"))
        failure.code = error.get("code", "http_error")
        raise failure
    return resp.json()


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _connector_id(settings: Settings, name: str) -> str:
    from contextd.core.errors import NotFound

    for row in call(settings, "GET", "/v1/connectors"):
        if name in (row["name"], row["id"]):
            return str(row["id"])
    raise NotFound(f"no connector named {name!r} (see `contextd connectors list`)")


def keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = call(settings, "GET", "/v1/keys")
    if args.json:
        print(json.dumps(keys, indent=2))
    else:
        _table([{**k, "state": "revoked" if k["revoked_at"] else "active"} for k in keys],
               ["id", "name", "role", "state", "created_at", "last_used_at"])
    return 0


def keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.core.errors import NotFound

    keys = call(settings, "GET", "/v1/keys")
    match = [k for k in keys if args.key in (k["id"], k["name"]) and not k["revoked_at"]]
    if not match:
        raise NotFound(f"no active key with id or name {args.key!r}")
    revoked = call(settings, "DELETE", f"/v1/keys/{match[0]['id']}")
    print(f"revoked {revoked['id']} ({revoked['name']}, {revoked['role']})")
    return 0


def connectors_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = call(settings, "GET", "/v1/connectors")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table([{"name": r["name"], "kind": r["kind"], "state": r["status"]["state"],
             "schedule": json.dumps(r["schedule"]) if r["schedule"] else "on demand",
             "last_success_at": r["status"]["last_success_at"],
             "next_run_at": r["status"]["next_run_at"]} for r in rows],
           ["name", "kind", "state", "schedule", "last_success_at", "next_run_at"])
    return 0


def connectors_create(args: argparse.Namespace, settings: Settings) -> int:
    text = Path(args.config[1:]).read_text() if args.config.startswith("@") else args.config
    body: dict[str, Any] = {"name": args.name, "kind": args.kind, "config": json.loads(text)}
    if args.interval or args.cron:
        body["schedule"] = ({"interval_seconds": args.interval} if args.interval
                            else {"cron": args.cron})
    if args.paused:
        body["enabled"] = False
    row = call(settings, "POST", "/v1/connectors", json=body)
    print(json.dumps(row, indent=2))
    return 0


def connectors_sync(args: argparse.Namespace, settings: Settings) -> int:
    connector_id = _connector_id(settings, args.name)
    run = call(settings, "POST", f"/v1/connectors/{connector_id}/sync",
               params={"wait": "true" if args.wait else "false"})
    print(json.dumps(run, indent=2))
    return 0 if run.get("status") in ("queued", "success", "partial") else 1


def connectors_schedule(args: argparse.Namespace, settings: Settings) -> int:
    schedule = ({"interval_seconds": args.interval} if args.interval
                else {"cron": args.cron} if args.cron else None)
    row = call(settings, "PATCH", f"/v1/connectors/{_connector_id(settings, args.name)}",
               json={"schedule": schedule})
    when = json.dumps(row["schedule"]) if row["schedule"] else "on demand"
    print(f"{row['name']}: {when}, next run {row['status']['next_run_at'] or '-'}")
    return 0


def _toggle(action: str) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        row = call(settings, "POST", f"/v1/connectors/{_connector_id(settings, args.name)}/"
                                     f"{action}")
        print(f"{row['name']}: {row['status']['state']}")
        return 0
    return run


def register(sub: Any, keys_sub: Any) -> None:
    """Add ``keys list|revoke`` to ``keys_sub`` and the ``connectors`` group to ``sub``."""
    listing = keys_sub.add_parser("list", help="list keys (through the running service)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key", help="the key's id or name")
    revoke.set_defaults(func=keys_revoke)

    conn = sub.add_parser("connectors", help="manage connectors through the running service")
    conn.description = ("list, create, sync, schedule, pause and resume connectors through "
                        "the running service (CONTEXTD_URL, admin key in CONTEXTD_API_KEY)")
    conn_sub = conn.add_subparsers(dest="connectors_command", required=True)
    ls = conn_sub.add_parser("list", help="connectors with state, schedule and next run")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=connectors_list)
    create = conn_sub.add_parser("create", help="create a connector (GET /v1/connector-kinds "
                                                "lists each kind's config)")
    create.add_argument("name")
    create.add_argument("--kind", required=True)
    create.add_argument("--config", required=True, help="JSON, or @file holding JSON")
    when = create.add_mutually_exclusive_group()
    when.add_argument("--interval", type=int, help="run every N seconds")
    when.add_argument("--cron", help="five-field crontab schedule, UTC")
    create.add_argument("--paused", action="store_true", help="create it disabled")
    create.set_defaults(func=connectors_create)
    sync = conn_sub.add_parser("sync", help="run a connector now")
    sync.add_argument("name", help="the connector's name or id")
    sync.add_argument("--wait", action="store_true", help="wait for the run and print it")
    sync.set_defaults(func=connectors_sync)
    schedule = conn_sub.add_parser("schedule", help="change when a connector runs")
    schedule.add_argument("name", help="the connector's name or id")
    every = schedule.add_mutually_exclusive_group(required=True)
    every.add_argument("--interval", type=int, help="run every N seconds")
    every.add_argument("--cron", help="five-field crontab schedule, UTC")
    every.add_argument("--on-demand", action="store_true", help="no schedule")
    schedule.set_defaults(func=connectors_schedule)
    for action in ("pause", "resume"):
        toggle = conn_sub.add_parser(action, help=f"{action} a connector's schedule")
        toggle.add_argument("name", help="the connector's name or id")
        toggle.set_defaults(func=_toggle(action))
