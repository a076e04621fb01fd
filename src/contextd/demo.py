"""The bundled sample company as a real starting point: its sources become configured
connectors (visible in ``GET /v1/connectors``, with schedules an admin can change, syncable
on demand), its users go into the principals directory, and three keys (agent, admin,
analyst) are kept in the data directory so a second run hands out the same keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from contextd.core.errors import AuthenticationFailed, ConfigError
from contextd.runtime import Runtime
from contextd.state.keys import authenticate, create_key, list_keys, revoke_key
from contextd.state.principals import set_user_groups

ROLES = ("agent", "admin", "analyst")
KEYS_FILE = "demo-keys.json"


def _resolve_paths(config: dict[str, Any], base: Path) -> dict[str, Any]:
    resolved = dict(config)
    if "path" in resolved and not Path(resolved["path"]).is_absolute():
        resolved["path"] = str((base / resolved["path"]).resolve())
    return resolved


def manifest(data_dir: Path) -> list[dict[str, Any]]:
    """The connectors of ``data_dir/connectors.json`` with absolute paths."""
    path = data_dir / "connectors.json"
    if not path.is_file():
        raise ConfigError(f"no demo data at {data_dir} (missing connectors.json)")
    return [{**entry, "config": _resolve_paths(entry["config"], data_dir)}
            for entry in json.loads(path.read_text())]


def register_connectors(runtime: Runtime, data_dir: Path) -> dict[str, str]:
    """Create each sample connector that does not exist yet (name -> id).

    An existing connector is left as it is, so an admin's changes to its schedule or
    config survive a re-run.
    """
    service = runtime.connectors
    existing = {row.name: row.id for row in service.all()}
    ids = {}
    for entry in manifest(data_dir):
        if entry["name"] in existing:
            ids[entry["name"]] = existing[entry["name"]]
            continue
        row = service.create(name=entry["name"], kind=entry["kind"], config=entry["config"],
                             schedule=entry.get("schedule"))
        ids[row.name] = row.id
    return ids


def demo_keys(runtime: Runtime, key_dir: Path) -> dict[str, str]:
    """One key per role, stored in ``key_dir/demo-keys.json`` (mode 0600) and reused.

    A stored key that no longer authenticates (revoked, or the database was reset) is
    replaced; any other active key of the same demo name is revoked first, so there are
    always exactly three demo keys.
    """
    path = key_dir / KEYS_FILE
    stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    keys: dict[str, str] = {}
    for role in ROLES:
        token = stored.get(role)
        if token:
            try:
                authenticate(runtime.engine, token)
                keys[role] = token
                continue
            except AuthenticationFailed:
                pass
        for old in list_keys(runtime.engine):
            if old.name == f"demo-{role}" and old.revoked_at is None:
                revoke_key(runtime.engine, key_id=old.id)
        keys[role] = create_key(runtime.engine, name=f"demo-{role}", role=role)[1]
    if keys != stored:
        key_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle, indent=2)
    os.chmod(path, 0o600)
    return keys


def load_demo(runtime: Runtime, data_dir: Path) -> dict[str, Any]:
    """Register and sync the sample connectors and load the sample principals.

    The sample directory must be under ``filesystem_allowed_roots`` (``contextd demo`` adds
    it), since the demo's connectors are configured like any other.
    """
    roots = [Path(r).resolve() for r in runtime.settings.filesystem_allowed_roots]
    if not any(data_dir.resolve().is_relative_to(root) for root in roots):
        raise ConfigError(f"the demo reads {data_dir.resolve()}: add it to "
                          "CONTEXTD_FILESYSTEM_ALLOWED_ROOTS",
                          details=[{"field": "filesystem_allowed_roots",
                                    "message": "does not hold the sample directory"}])
    ids = register_connectors(runtime, data_dir)
    synced = {}
    for name, connector_id in ids.items():
        run = runtime.connectors.run_blocking(connector_id, trigger="demo")
        synced[name] = {"status": run.status, "records": run.records_pulled,
                        "chunks_embedded": run.chunks_embedded,
                        "quarantined": run.quarantined}
    principals = json.loads((data_dir / "principals.json").read_text())
    for user_id, groups in principals["users"].items():
        set_user_groups(runtime.engine, user_id=user_id, groups=groups, origin="demo")
    demo = principals.get("demo", {})
    return {"synced": synced, "users": sorted(principals["users"]),
            "example_user": demo.get("user", next(iter(principals["users"]))),
            "example_query": demo.get("query", "What is the current travel per diem?")}
