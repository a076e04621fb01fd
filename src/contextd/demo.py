"""Load the bundled sample company: connectors, principals, and demo API keys."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from contextd.core.errors import ConfigError
from contextd.runtime import Runtime
from contextd.state.keys import create_key
from contextd.state.principals import set_user_groups


def _resolve_paths(config: dict[str, Any], base: Path) -> dict[str, Any]:
    resolved = dict(config)
    if "path" in resolved and not Path(resolved["path"]).is_absolute():
        resolved["path"] = str((base / resolved["path"]).resolve())
    return resolved


def load_demo(runtime: Runtime, data_dir: Path) -> dict[str, Any]:
    """Sync every connector of ``data_dir/connectors.json`` and load its principals."""
    from contextd.connectors.registry import build_connector
    from contextd.runtime import source_limits
    from contextd.sync.pull import run_sync

    manifest = data_dir / "connectors.json"
    if not manifest.is_file():
        raise ConfigError(f"no demo data at {data_dir} (missing connectors.json)")
    synced = {}
    # The demo's own allowed filesystem root is its sample data directory.
    limits = replace(source_limits(runtime.settings), allowed_roots=(data_dir.resolve(),))
    for entry in json.loads(manifest.read_text()):
        connector = build_connector(entry["name"], entry["kind"],
                                    _resolve_paths(entry["config"], data_dir), limits)
        result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
        synced[entry["name"]] = {"records": result.stats.records,
                                 "chunks_embedded": result.stats.chunks_embedded,
                                 "failures": len(result.failures)}
    principals = json.loads((data_dir / "principals.json").read_text())
    for user_id, groups in principals["users"].items():
        set_user_groups(runtime.engine, user_id=user_id, groups=groups, origin="demo")
    _, agent_key = create_key(runtime.engine, name="demo-agent", role="agent")
    _, admin_key = create_key(runtime.engine, name="demo-admin", role="admin")
    demo = principals.get("demo", {})
    return {"synced": synced, "agent_key": agent_key, "admin_key": admin_key,
            "example_user": demo.get("user", "alice"),
            "example_query": demo.get("query", "What is the current travel per diem?")}
