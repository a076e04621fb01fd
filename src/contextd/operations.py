"""``contextd verify``, ``contextd backup DIR`` and ``contextd restore DIR``.

All three work on a stopped service: the Edge store is locked by the process that opens
it, so a running service keeps the command line out (it says so and exits 2).

- ``verify`` runs the same check as the service (documents in SQL against points in the
  store, see :mod:`contextd.sync.consistency`) and exits 0 when consistent, 1 when not.
- ``backup`` writes one consistent snapshot: with the store's writes paused (its write
  lock held), the SQL database is copied (SQLite through its online backup API,
  PostgreSQL with ``pg_dump -Fc`` when it is installed) and the flushed Edge collections
  are copied file by file. A Qdrant server store is not copied: snapshot it with the
  server's own snapshot API at the same time.
- ``restore`` puts a backup back (SQLite file, ``pg_restore --clean``, Edge directories)
  and verifies the result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from contextd.core.errors import ConfigError
from contextd.core.settings import Settings
from contextd.core.types import utcnow
from contextd.runtime import Runtime
from contextd.sync.consistency import check_consistency

MANIFEST = "manifest.json"


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _open(settings: Settings) -> Runtime:
    runtime = Runtime(settings)
    try:
        _ = runtime.engine, runtime.store
    except Exception as exc:
        runtime.close()
        if "lock" in str(exc).lower():
            raise ConfigError(f"the vector store at {settings.edge_path} is in use: stop the "
                              "service first") from exc
        raise
    return runtime


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Print the consistency report; exit 0 when the store holds every chunk SQL names."""
    runtime = _open(settings)
    try:
        report = check_consistency(runtime.engine, runtime.store, sample=args.sample)
    finally:
        runtime.close()
    _print(report.as_dict())
    return 0 if report.ok else 1


def _edge_dirs(settings: Settings) -> list[Path]:
    root = settings.edge_path.parent
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _libpq_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _backup_sql(settings: Settings, dest: Path) -> str:
    url = make_url(settings.sql_url)
    if url.get_backend_name() == "sqlite":
        target = sqlite3.connect(dest / "contextd.db")
        source = sqlite3.connect(url.database or "")
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return "sqlite"
    if url.get_backend_name() == "postgresql":
        if shutil.which("pg_dump") is None:
            raise ConfigError("pg_dump is not installed: back PostgreSQL up with its own "
                              "tools (pg_dump, base backups) while the service is stopped")
        subprocess.run(["pg_dump", "-Fc", "-f", str(dest / "contextd.pgdump"),
                        _libpq_url(settings.sql_url)], check=True)
        return "postgresql"
    raise ConfigError(f"backups of {url.get_backend_name()} databases are not supported")


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """Snapshot SQL and the Edge store into DIR (which must not exist or be empty)."""
    dest = Path(args.dir)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} is not empty: give a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    runtime = _open(settings)
    try:
        from contextd.core.edge_store import EdgeStore

        with ExitStack() as paused:
            store = runtime.store
            if isinstance(store, EdgeStore):
                paused.enter_context(store.writes_paused())
            sql = _backup_sql(settings, dest)
            copied = []
            if isinstance(store, EdgeStore):
                for directory in _edge_dirs(settings):
                    shutil.copytree(directory, dest / "edge" / directory.name)
                    copied.append(directory.name)
        report = check_consistency(runtime.engine, store, sample=0)  # of what was copied
    finally:
        runtime.close()
    manifest = {"created_at": utcnow().isoformat(), "sql": sql, "edge": copied,
                "documents": {s: c["documents"] for s, c in report.sources.items()},
                "chunks": {s: c["chunks"] for s, c in report.sources.items()},
                "consistent": report.ok}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _print(manifest)
    if not copied:
        print("note: the store is a Qdrant server; snapshot it with its own API",
              file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Replace SQL and the Edge store with the backup in DIR, then verify."""
    src = Path(args.dir)
    manifest_path = src / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(f"{src} holds no contextd backup (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    url = make_url(settings.sql_url)
    if manifest["sql"] != url.get_backend_name():
        raise ConfigError(f"the backup holds a {manifest['sql']} database, the service uses "
                          f"{url.get_backend_name()}")
    if manifest["sql"] == "sqlite":
        target_path = Path(url.database or "")
        target_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (target_path.with_name(target_path.name + s) for s in ("-wal", "-shm")):
            stale.unlink(missing_ok=True)
        source = sqlite3.connect(src / "contextd.db")
        target = sqlite3.connect(target_path)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
    else:
        if shutil.which("pg_restore") is None:
            raise ConfigError("pg_restore is not installed: restore PostgreSQL with its tools")
        subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d",
                        _libpq_url(settings.sql_url), str(src / "contextd.pgdump")],
                       check=True)
    edge_root = settings.edge_path.parent
    for name in manifest.get("edge", []):
        shutil.rmtree(edge_root / name, ignore_errors=True)
        shutil.copytree(src / "edge" / name, edge_root / name)
    args.sample = 1000
    return cmd_verify(args, settings)
