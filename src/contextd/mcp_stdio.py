"""``contextd mcp``: the MCP tools over stdio, for desktop agents that start a subprocess.

The key comes from ``CONTEXTD_API_KEY``. With a service running (``CONTEXTD_URL``, else the
configured host and port), every tool is a request to its HTTP API, exactly as over
``/mcp``. With none running, the tools serve the local data dir through the same app,
in-process, on a private copy: Qdrant Edge has no read-only mode and holds a lock on the
directory it opens, so opening the original would change it and keep ``contextd serve``
from starting. The copy is read for context, sources and documents; recording
interactions or feedback is refused there, since it would be lost with the copy. What was
chosen, and why, is printed on stderr (stdout carries the protocol).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contextd.core.errors import AuthenticationFailed, ConfigError, PermissionDenied

if TYPE_CHECKING:  # imported when the command runs, so `contextd --help` stays fast
    import httpx

    from contextd.core.settings import Settings

LOCAL_WRITE_TOOLS = ("record_interaction", "give_feedback")


def say(message: str) -> None:
    print(f"contextd mcp: {message}", file=sys.stderr, flush=True)


def _logs_to_stderr() -> None:
    """stdout carries the protocol: every log handler writing there moves to stderr."""
    for handler in [*logging.getLogger().handlers, *logging.getLogger("contextd").handlers]:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def service_url(args: argparse.Namespace, settings: Settings) -> str:
    return (args.url or os.environ.get("CONTEXTD_URL")
            or f"http://{settings.host}:{settings.port}").rstrip("/")


def running(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def check_remote_key(url: str, key: str) -> None:
    """Refuse to start with a key the service refuses (401/403), before any tool runs.
    ``GET /v1/sources`` authenticates and checks the role before reading parameters."""
    import httpx

    resp = httpx.get(f"{url}/v1/sources", headers={"Authorization": f"Bearer {key}"},
                     timeout=10.0)
    if resp.status_code == 401:
        raise AuthenticationFailed(f"{url} refused CONTEXTD_API_KEY: {_message(resp)}")
    if resp.status_code == 403:
        raise PermissionDenied(f"{url} refused CONTEXTD_API_KEY: {_message(resp)}")


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    _logs_to_stderr()
    key = os.environ.get("CONTEXTD_API_KEY", "").strip()
    if not key:
        raise ConfigError("set CONTEXTD_API_KEY to an agent key (contextd keys create "
                          "--role agent)")
    url = service_url(args, settings)
    if running(url):
        check_remote_key(url, key)
        say(f"serving MCP over stdio through the contextd API at {url}")
        anyio.run(_serve_remote, url, key)
        return 0
    say(f"no contextd service answers at {url}; reading {settings.data_dir} directly")
    _serve_local(settings, key)
    return 0


async def _serve_remote(url: str, key: str) -> None:
    from contextd.api.mcptools import build_server
    from contextd.client.transport import AsyncClient

    async with AsyncClient(url, key, max_retries=2, max_wait=10.0) as api:
        await build_server(api, _no_headers).run_stdio_async()


def _no_headers(ctx: Any) -> None:
    return None


def _serve_local(settings: Settings, key: str) -> None:
    import anyio

    if not settings.data_dir.exists():
        raise ConfigError(f"no service at the configured URL and no data dir at "
                          f"{settings.data_dir}: start `contextd serve` or set CONTEXTD_URL")
    with tempfile.TemporaryDirectory(prefix="contextd-mcp-") as tmp:
        copy = Path(tmp) / "data"
        shutil.copytree(settings.data_dir, copy)
        size = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
        shared = [name for name, value in (("database_url", settings.database_url),
                                           ("memory_database_url",
                                            settings.memory_database_url),
                                           ("qdrant_url", settings.qdrant_url)) if value]
        say(f"the embedded store has no read-only mode and locks what it opens, so this "
            f"serves a private copy of {settings.data_dir} ({size / 1e6:.1f} MB in {copy}); "
            f"the original is left untouched and `contextd serve` can still start. "
            f"{', '.join(LOCAL_WRITE_TOOLS)} are refused until a service runs."
            + (f" Shared services used as configured: {', '.join(shared)}." if shared else ""))
        local = settings.model_copy(update={"data_dir": copy, "scheduler_enabled": False})
        anyio.run(_serve_in_process, local, key)


async def _serve_in_process(settings: Settings, key: str) -> None:
    import httpx

    from contextd.api.app import create_app
    from contextd.api.mcpmount import INTERNAL_BASE, InProcessTransport
    from contextd.api.mcptools import build_server
    from contextd.client.transport import AsyncClient
    from contextd.process.migrate import local_runtime
    from contextd.state.keys import authenticate

    runtime = local_runtime(settings)
    try:
        found = authenticate(runtime.engine, key)
        if found.role not in ("agent", "admin"):
            raise PermissionDenied(f"role {found.role!r} may not use MCP; needs agent or admin")
        app = create_app(runtime=runtime)
        async with app.router.lifespan_context(app), AsyncClient(
                http=httpx.AsyncClient(base_url=INTERNAL_BASE, transport=InProcessTransport(
                    app), headers={"Authorization": f"Bearer {key}"}, timeout=60.0),
                max_retries=0) as api:
            server = build_server(api, _no_headers, refuse=_local_refusal)
            await server.run_stdio_async()
    finally:
        runtime.close()


def _local_refusal(tool: str) -> str | None:
    if tool in LOCAL_WRITE_TOOLS:
        return ("no contextd service is running, so this MCP server reads a private copy of "
                "the data dir; interactions and feedback recorded there would be lost. "
                "Start `contextd serve` (or set CONTEXTD_URL) to record them.")
    return None


def register(sub: Any) -> None:
    """The ``mcp`` subcommand."""
    mcp = sub.add_parser("mcp", help="MCP over stdio for desktop agents (key from "
                                     "CONTEXTD_API_KEY)")
    mcp.add_argument("--url", help="the contextd service (default: CONTEXTD_URL, else the "
                                   "configured host and port)")
    mcp.set_defaults(func=cmd_mcp)
