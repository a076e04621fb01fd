"""``python -m bench.concurrency [--chunks N]``: serving beside a sync, and under concurrency.

The service runs here as ``contextd serve`` runs it (uvicorn in this process, one model
owner, the Edge store), and ingest runs in a thread of the same process, as a sync does.

(a) **Serving during a sync.** The corpus is cut into slices; in each pair of slices one
is ingested alone, then ``/v1/context`` is asked at ``--rate`` per second with no ingest
(idle), then the next slice is ingested while the same load runs. Alternating keeps the
paired figures under the same machine load and index size: p50/p95 during the sync
against idle, and ingest chunks/s while serving against alone.

(b) **Throughput under concurrency.** Closed-loop clients over real HTTP in a separate
process (its Python does not share the server's interpreter lock), 1 and 32 of them on
the same index, alternated ``--rounds`` times: requests/s, p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import corpus
from bench.load import OpenLoop, summary
from contextd.core.settings import Settings
from contextd.ingest.chunking import Chunker
from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from contextd.state.principals import set_user_groups

RESULTS = Path(__file__).resolve().parent / "results"
SYNC_BATCH = 100  # records per ingest call, as a connector's default batch


class Service:
    """The app under uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, runtime: Runtime) -> None:
        import socket

        import uvicorn

        from contextd.api.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def ingest_slice(runtime: Runtime, records: list[Any]) -> tuple[int, float]:
    """(chunks embedded, seconds) for ``records`` ingested in connector-sized batches."""
    started = time.perf_counter()
    embedded = 0
    for start in range(0, len(records), SYNC_BATCH):
        embedded += runtime.ingestor.ingest(records[start:start + SYNC_BATCH]).chunks_embedded
    return embedded, time.perf_counter() - started


def during_sync(runtime: Runtime, url: str, key: str, records: list[Any], queries: list[str],
                *, slices: int, rate: float, idle_seconds: float) -> dict[str, Any]:
    """Part (a); see the module docstring."""
    size = -(-len(records) // slices)
    parts = [records[i:i + size] for i in range(0, len(records), size)]
    load = OpenLoop(url, key, queries, rate)
    idle: list[float] = []
    busy: list[float] = []
    alone = [0, 0.0]
    served = [0, 0.0]
    try:
        for number, part in enumerate(parts):
            if number % 2 == 0:
                chunks, seconds = ingest_slice(runtime, part)
                alone[0] += chunks
                alone[1] += seconds
                load.start()
                time.sleep(idle_seconds)
                idle.extend(load.stop())
            else:
                load.start()
                chunks, seconds = ingest_slice(runtime, part)
                busy.extend(load.stop())
                served[0] += chunks
                served[1] += seconds
            print(f"  slice {number + 1}/{len(parts)}: {chunks} chunks in {seconds:.1f}s "
                  f"({'with' if number % 2 else 'without'} queries)", flush=True)
    finally:
        load.close()
    alone_rate = alone[0] / alone[1] if alone[1] else 0.0
    served_rate = served[0] / served[1] if served[1] else 0.0
    idle_s, busy_s = summary(idle), summary(busy)
    return {"idle_ms": idle_s, "during_sync_ms": busy_s,
            "p95_ratio": round(busy_s["p95"] / idle_s["p95"], 2),
            "p50_ratio": round(busy_s["p50"] / idle_s["p50"], 2),
            "ingest_alone_chunks_per_s": round(alone_rate, 1),
            "ingest_serving_chunks_per_s": round(served_rate, 1),
            "ingest_ratio": round(served_rate / alone_rate, 3) if alone_rate else 0.0,
            "rate_per_s": rate}


def throughput(url: str, key: str, queries: list[str], *, rounds: int, requests: int,
               clients: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    """Part (b); each level's figures from a client process, alternated ``rounds`` times."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(queries, fh)
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in clients}
    try:
        for _ in range(rounds):
            for n in clients:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.load", url, key, "--clients", str(n),
                     "--requests", str(max(requests, 4 * n)), "--queries", fh.name],
                    check=True, capture_output=True, text=True)
                runs[n].append(json.loads(out.stdout))
                print(f"  {n:>2} clients: {runs[n][-1]}", flush=True)
    finally:
        Path(fh.name).unlink()
    levels = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
              for n, rs in runs.items()}
    low, high = min(clients), max(clients)
    return {"levels": levels, "runs": runs,
            "rps_ratio": round(levels[high]["rps"] / levels[low]["rps"], 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="contextd-bench-concurrency-"))
    runtime = Runtime(Settings(data_dir=workdir, telemetry_enabled=True, log_level="WARNING"))
    runtime.migrate()
    try:
        chunker = Chunker(runtime.settings.chunk_size, runtime.settings.chunk_overlap)
        records, per_record = corpus.build(args.chunks, chunker)
        queries = corpus.queries(args.queries)
        runtime.dense.encode_documents(["load and warm the model"] * 8)
        runtime.dense.encode_query("load and warm the model")
        set_user_groups(runtime.engine, user_id="ann", groups=["sales"])
        # Above any rate the bench reaches: it measures the model and engine, not limits.
        _, key = create_key(runtime.engine, name="bench", role="agent",
                            policy=KeyPolicy(rate_per_minute=10**6, burst=10**5))
        chunks = sum(len(t) for t in per_record)
        print(f"concurrency bench: {len(records)} records, {chunks} chunks "
              f"({corpus.source()})", flush=True)
        result: dict[str, Any] = {"chunks": chunks, "corpus": corpus.source()}
        with Service(runtime) as service:
            if args.part in ("a", "all"):
                result["sync"] = during_sync(runtime, service.url, key, records, queries,
                                             slices=args.slices, rate=args.rate,
                                             idle_seconds=args.idle_seconds)
                result["sync"]["document_process"] = \
                    runtime.settings.embedding_document_process
            else:  # part (b) alone: the same index part (a) leaves
                ingest_slice(runtime, records)
            if args.part in ("b", "all"):
                result["throughput"] = throughput(service.url, key, queries,
                                                  rounds=args.rounds, requests=args.requests)
    finally:
        runtime.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(result: dict[str, Any]) -> dict[str, bool]:
    """Print the figures and return the targets (of the parts that ran), pass or fail."""
    targets: dict[str, bool] = {}
    if "sync" in result:
        sync = result["sync"]
        idle, busy = sync["idle_ms"], sync["during_sync_ms"]
        where = "a child process" if sync.get("document_process") else "the model thread"
        print(f"/v1/context at {sync['rate_per_s']:g}/s: idle p50 {idle['p50']:.1f} p95 "
              f"{idle['p95']:.1f} ms; during sync p50 {busy['p50']:.1f} p95 "
              f"{busy['p95']:.1f} ms = p95 {sync['p95_ratio']:.2f}x idle "
              f"({idle['requests']} / {busy['requests']} requests; documents embedded in "
              f"{where})")
        print(f"ingest: alone {sync['ingest_alone_chunks_per_s']:.1f} chunks/s, while serving "
              f"{sync['ingest_serving_chunks_per_s']:.1f} chunks/s = "
              f"{sync['ingest_ratio']:.2f}x")
        targets["p95 during sync <= 5x idle p95"] = sync["p95_ratio"] <= 5
        targets["ingest while serving >= 0.7x alone"] = sync["ingest_ratio"] >= 0.7
    if "throughput" in result:
        load = result["throughput"]
        for n, level in load["levels"].items():
            print(f"{n:>2} clients: {level['rps']:.1f} requests/s, p50 {level['p50']:.1f} ms, "
                  f"p99 {level['p99']:.1f} ms")
        print(f"requests/s at 32 clients = {load['rps_ratio']:.2f}x at 1 client")
        targets["requests/s at 32 clients >= 2x at 1"] = load["rps_ratio"] >= 2
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return targets


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.concurrency")
    p.add_argument("--chunks", type=int, default=5000)
    p.add_argument("--part", choices=("a", "b", "all"), default="all",
                   help="a: serving during a sync; b: throughput under concurrency")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--slices", type=int, default=4, help="alternating alone / serving")
    p.add_argument("--rate", type=float, default=5.0, help="queries per second in (a)")
    p.add_argument("--idle-seconds", type=float, default=20.0,
                   help="idle serving after each slice ingested alone")
    p.add_argument("--rounds", type=int, default=2, help="1-vs-32-client alternations")
    p.add_argument("--requests", type=int, default=200, help="per closed-loop run")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    result["targets"] = report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "concurrency-latest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
