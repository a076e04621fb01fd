"""``contextd demo``: register and sync the sample company, keep three keys, then serve and
print, once the service answers, where everything is and the keys to use."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextd.core.settings import Settings


def _demo_settings(settings: Settings, data: Path) -> Settings:
    """The settings with the sample folder added to ``filesystem_allowed_roots``, so the
    demo's own connectors are accepted (and keep syncing while the demo serves)."""
    roots = list(settings.filesystem_allowed_roots)
    if data.resolve() not in [Path(r).resolve() for r in roots]:
        roots.append(data.resolve())
    return settings.model_copy(update={"filesystem_allowed_roots": roots})


def env_lines(base_url: str, keys: dict[str, str]) -> list[str]:
    """``export`` lines a shell can ``eval``: the service address and the three keys."""
    lines = [f"export CONTEXTD_URL={shlex.quote(base_url)}"]
    lines += [f"export {role.upper()}_KEY={shlex.quote(key)}" for role, key in keys.items()]
    return lines


def banner(info: dict[str, Any], keys: dict[str, str], base_url: str, key_file: Path) -> str:
    """What the demo prints once the service answers."""
    sources = ", ".join(f"{name} ({s['records']} records, {s['status']})"
                        for name, s in info["synced"].items())
    body = json.dumps({"query": info["example_query"], "user_id": info["example_user"],
                       "token_budget": 800})
    return "\n".join([
        "", f"contextd demo is ready. Sources: {sources}.", "",
        f"  API        {base_url}/v1   (OpenAPI docs: {base_url}/docs)",
        f"  Dashboard  {base_url}/dashboard   (log in with the analyst or admin key)", "",
        "  Keys (kept in " + str(key_file) + "; `contextd demo --keys` prints these again):",
        *(f"    {line}" for line in env_lines(base_url, keys)), "",
        f"  Try, as {info['example_user']}:",
        f"    curl -s {base_url}/v1/context -H \"Authorization: Bearer $AGENT_KEY\" "
        f"-H 'Content-Type: application/json' -d '{body}'", "",
        "  Users: " + ", ".join(info["users"]) + ". Ctrl-C stops the service.", ""])


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.cli import local_runtime
    from contextd.demo import KEYS_FILE, demo_keys, load_demo
    from contextd.process.migrate import migrate_databases

    if args.keys:  # stdout is for `eval`: every log line goes to stderr
        for handler in [*logging.getLogger().handlers, *logging.getLogger("contextd").handlers]:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
    host, port = args.host or settings.host, args.port or settings.port
    base_url = f"http://{host}:{port}"
    settings = _demo_settings(settings, Path(args.data))
    migrate_databases(settings)
    runtime = local_runtime(settings)
    try:
        if args.keys:
            print("\n".join(env_lines(base_url, demo_keys(runtime, settings.data_dir))))
            return 0
        info = load_demo(runtime, Path(args.data))
        keys = demo_keys(runtime, settings.data_dir)
    finally:
        runtime.close()
    text = banner(info, keys, base_url, settings.data_dir / KEYS_FILE)
    if args.no_serve:
        print(text)
        return 0
    return _serve_then_print(settings, host, port, text)


def _serve_then_print(settings: Settings, host: str, port: int, text: str) -> int:
    import uvicorn

    from contextd.api.app import create_app
    from contextd.process.discovery import announce as service_files
    from contextd.process.roles import exit_on_sigterm

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                           log_level="warning", log_config=None))

    def print_banner() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.1)
        if server.started:
            print(text, flush=True)

    threading.Thread(target=print_banner, daemon=True, name="contextd-demo-banner").start()
    # Like `contextd serve`: local tools (`contextd sync`, `ingest`, `quality check`) find
    # the demo through the data directory and go through it, as the store has one owner.
    exit_on_sigterm()
    with contextlib.ExitStack() as stack:
        if not settings.qdrant_url:
            app.state.local_token = stack.enter_context(
                service_files(settings, host=host, port=port))
        server.run()
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="register and sync the sample company, serve, and "
                                       "print the URLs and three keys")
    demo.add_argument("--data", default="sample_data", help="sample data directory")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--no-serve", action="store_true", help="load and print, do not serve")
    demo.add_argument("--keys", action="store_true",
                      help="print `export` lines for the demo's URL and keys, and exit")
    demo.set_defaults(func=cmd_demo)
