"""The ``contextd`` command line: serve, demo, ingest, keys, connectors, eval.

Every command takes its configuration from ``CONTEXTD_*`` settings; errors print one
clear line and exit non-zero, never a traceback. Commands import what they need when they
run, so ``contextd --help`` answers without loading the model or the web stack.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextd.core.settings import Settings
    from contextd.runtime import Runtime as RuntimeType


def local_runtime(settings: Settings) -> RuntimeType:
    """The composition root, imported on first use (it loads torch and the stores); on the
    default SQLite file of the data directory the schema is brought up to date first."""
    from contextd.process.migrate import local_runtime as build

    return build(settings)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.process.roles import serve

    return serve(settings, role=getattr(args, "role", None), host=args.host, port=args.port)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.process.roles import serve

    return serve(settings, role="worker", host=args.host, port=args.port)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.process.migrate import migrate_databases

    _print({"migrated": migrate_databases(settings)})
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.connectors.registry import build_connector
    from contextd.sync.pull import run_sync

    config: dict[str, Any] = json.loads(args.config) if args.config else {}
    config.setdefault("path", str(Path(args.path).resolve()))
    from contextd.process import remote
    from contextd.process.discovery import find_service

    if (service := find_service(settings)) is not None:
        out = remote.ingest(service, path=config.pop("path"), kind=args.connector,
                            name=args.name, config=config)
        _print(out["summary"])
        for failure in out["failures"]:
            print(f"failed: {failure['source_id']}: {failure['error']}", file=sys.stderr)
        return 0
    runtime = local_runtime(settings)
    try:
        connector = build_connector(args.name or args.connector, args.connector, config)
        connector.check()
        result = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    finally:
        runtime.close()
    _print(result.summary())
    for failure in result.failures:
        print(f"failed: {failure.source_id}: {failure.error}", file=sys.stderr)
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Run a configured connector (``POST /v1/connectors``) once, now, and print the run."""
    from contextd.process import remote
    from contextd.process.discovery import find_service
    from contextd.state.connectors import find_connector

    if (service := find_service(settings)) is not None:
        found = remote.sync(service, args.name)
        _print(found)
        return 0 if found["status"] in ("success", "partial") else 1
    runtime = local_runtime(settings)
    try:
        row = find_connector(runtime.engine, args.name)
        run = runtime.connectors.run_blocking(row.id, trigger="cli")
    finally:
        runtime.close()
    _print(run.model_dump())
    return 0 if run.status in ("success", "partial") else 1


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.state.keys import create_key

    runtime = local_runtime(settings)
    try:
        key, secret = create_key(runtime.engine, name=args.name or f"{args.role}-key",
                                 role=args.role)
    finally:
        runtime.close()
    print(secret)
    print(f"id={key.id} role={key.role} (shown once; only its hash is stored)", file=sys.stderr)
    return 0


def cmd_memory_purge(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from contextd.core.types import as_utc, utcnow
    from contextd.memory.interactions import purge_expired

    now = as_utc(datetime.fromisoformat(args.now)) if args.now else utcnow()
    ttl = args.ttl_days if args.ttl_days is not None else settings.interaction_ttl_days
    runtime = local_runtime(settings)
    try:
        removed = purge_expired(runtime.memory_engine, runtime.memory_store, now, ttl_days=ttl)
    finally:
        runtime.close()
    _print({"removed": removed, "ttl_days": ttl, "now": now.isoformat()})
    return 0


def cmd_groups_import(args: argparse.Namespace, settings: Settings) -> int:
    """Apply a CSV/LDIF membership export (the ``groups`` source kind) to the directory."""
    from contextd.connectors.groups import GroupsConfig, GroupsConnector
    from contextd.state import audit
    from contextd.sync.directory import sync_directory

    connector = GroupsConnector(args.name, GroupsConfig(path=Path(args.path).resolve(),
                                                        format=args.format))
    runtime = local_runtime(settings)
    try:
        result = sync_directory(connector, runtime.engine)
        audit.record(runtime.engine, action="principal.import", actor="cli",
                     target=f"origin:{result.origin}",
                     details={"memberships": result.memberships, "added": result.added,
                              "removed": result.removed})
    finally:
        runtime.close()
    _print({"origin": result.origin, "memberships": result.memberships,
            "added": result.added, "removed": result.removed})
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from contextd.retrieval.evaluation import evaluate, load_beir, records

    dataset = load_beir(Path(args.dataset), split=args.split)
    workdir = Path(tempfile.mkdtemp(prefix="contextd-eval-"))
    eval_settings = settings.model_copy(update={"data_dir": workdir, "database_url": None,
                                                "qdrant_url": None})
    runtime = local_runtime(eval_settings)
    try:
        started = time.perf_counter()
        docs = list(records(dataset))
        for start in range(0, len(docs), 512):
            runtime.ingestor.ingest(docs[start:start + 512])
        optimize = getattr(runtime.store, "optimize", None)
        if optimize:
            optimize()
        print(f"ingested {len(docs)} documents ({runtime.store.count()} chunks) in "
              f"{time.perf_counter() - started:.1f}s; {len(dataset.queries)} queries",
              file=sys.stderr)
        results = evaluate(runtime.retriever, dataset)
    finally:
        runtime.close()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {"dense": "dense", "sparse": "bm25", "hybrid": "hybrid"}
    for mode, figures in results.items():
        print(f"{labels[mode]:<7} nDCG@10 {figures['ndcg@10']:.3f}  "
              f"recall@100 {figures['recall@100']:.3f}")
    _store_eval_runs(settings, str(Path(args.dataset).resolve()),
                     {labels[mode]: figures for mode, figures in results.items()})
    return 0


def _store_eval_runs(settings: Settings, dataset: str,
                     results: dict[str, dict[str, float]]) -> None:
    """Keep the figures with the golden-set runs (``GET /v1/eval/runs``, the dashboard)."""
    from contextd.quality.evaluation import store_cli_run

    runtime = local_runtime(settings)
    try:
        ids = [store_cli_run(runtime.engine, dataset=dataset, mode=mode, metrics=figures).id
               for mode, figures in results.items()]
    finally:
        runtime.close()
    print(f"stored eval runs {', '.join(ids)} in {settings.sql_url.split('@')[-1]}",
          file=sys.stderr)


def cmd_quality_check(args: argparse.Namespace, settings: Settings) -> int:
    """Run golden sets against the live index (for cron or CI): exit 1 on a regression."""
    from contextd.quality.evaluation import AlertPolicy, EvalConfig, run_golden_set, run_json
    from contextd.quality.golden import get_golden_set, list_golden_sets

    webhook = settings.quality_webhook_url
    policy = AlertPolicy(threshold=settings.quality_regression_threshold,
                         webhook_url=webhook.get_secret_value() if webhook else None)
    config = EvalConfig(mode=args.mode, freshness=not args.no_freshness,
                        token_budget=args.token_budget)
    from contextd.process import remote
    from contextd.process.discovery import find_service

    if (service := find_service(settings)) is not None:
        runs = remote.quality_check(service, names=list(args.golden_set), mode=args.mode,
                                    freshness=not args.no_freshness,
                                    token_budget=args.token_budget)
        _print(runs)
        return 1 if any(run["regressed"] for run in runs) else 0
    runtime = local_runtime(settings)
    try:
        sets = ([get_golden_set(runtime.engine, name) for name in args.golden_set]
                if args.golden_set else list_golden_sets(runtime.engine))
        runs = [run_json(run_golden_set(runtime.retriever, runtime.engine, golden, config,
                                        policy)) for golden in sets]
    finally:
        runtime.close()
    _print(runs)
    return 1 if any(run["regressed"] for run in runs) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contextd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (API and sync workers by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=["all", "api", "worker"],
                       help="all: one process (default); api: HTTP API only; worker: syncs")
    serve.set_defaults(func=cmd_serve)

    from contextd.cli_demo import register as register_demo

    register_demo(sub)

    worker = sub.add_parser("worker", help="run schedules and syncs (health and metrics only)")
    worker.add_argument("--host")
    worker.add_argument("--port", type=int, help="health and metrics port")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="bring the SQL schema to this version's")
    migrate.set_defaults(func=cmd_migrate)

    ingest = sub.add_parser("ingest", help="load PATH through a connector, without a server")
    ingest.add_argument("path")
    ingest.add_argument("--connector", required=True, help="connector kind, e.g. filesystem")
    ingest.add_argument("--name", help="source name (default: the connector kind)")
    ingest.add_argument("--config", help="extra connector config as JSON")
    ingest.set_defaults(func=cmd_ingest)

    sync = sub.add_parser("sync", help="run a configured connector once, now")
    sync.add_argument("name", help="the connector's name")
    sync.set_defaults(func=cmd_sync)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--role", required=True, choices=["admin", "agent", "analyst"])
    create.add_argument("--name")
    create.set_defaults(func=cmd_keys_create)
    from contextd.cli_admin import register as register_admin

    register_admin(sub, keys_sub)

    mem = sub.add_parser("memory", help="interaction memory maintenance")
    mem_sub = mem.add_subparsers(dest="memory_command", required=True)
    purge = mem_sub.add_parser("purge", help="delete interactions older than the TTL")
    purge.add_argument("--ttl-days", type=float, help="override CONTEXTD_INTERACTION_TTL_DAYS")
    purge.add_argument("--now", help="ISO instant to measure age from (default: now)")
    purge.set_defaults(func=cmd_memory_purge)

    groups = sub.add_parser("groups", help="group memberships from directory exports")
    groups_sub = groups.add_subparsers(dest="groups_command", required=True)
    imp = groups_sub.add_parser("import", help="replace what --name set before with PATH")
    imp.add_argument("path", help="a CSV (group,member) or LDIF export")
    imp.add_argument("--format", choices=["csv", "ldif"], help="default: the file suffix")
    imp.add_argument("--name", default="groups", help="the source (origin) of these rows")
    imp.set_defaults(func=cmd_groups_import)

    ev = sub.add_parser("eval", help="nDCG@10 and recall@100 on a BEIR-layout dataset")
    ev.add_argument("dataset")
    ev.add_argument("--split", default="test")
    ev.set_defaults(func=cmd_eval)

    quality = sub.add_parser("quality", help="context quality")
    quality_sub = quality.add_subparsers(dest="quality_command", required=True)
    check = quality_sub.add_parser(
        "check", help="run golden sets against the live index; exit 1 on a regression")
    check.add_argument("golden_set", nargs="*", help="names or ids (default: every set)")
    check.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    check.add_argument("--no-freshness", action="store_true")
    check.add_argument("--token-budget", type=int, default=2000,
                       help="token budget of each bundle (default 2000)")
    check.set_defaults(func=cmd_quality_check)

    from contextd import mcp_stdio  # `contextd mcp`: its own module, imported light

    mcp_stdio.register(sub)
    from contextd import operations_cli  # `contextd verify`, `backup DIR`, `restore DIR`

    operations_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from contextd.core.errors import ContextdError
    from contextd.core.logging import configure_logging
    from contextd.core.settings import get_settings

    try:
        settings = get_settings()
        configure_logging(settings.log_level)
        return int(args.func(args, settings))
    except ContextdError as exc:
        detail = f" ({json.dumps(exc.details, default=str)})" if exc.details else ""
        print(f"contextd: error: {exc.message}{detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
