"""MCP ``get_context`` against ``POST /v1/context``: what the MCP layer adds to a request.

One small index (BEIR passages, ACLs as in ``make bench``) served by ``contextd serve`` in
its own process; this process is the client. Per query the same request (same query, same
user, same index) goes four ways, over loopback to the same server, each timed to the
parsed answer:

- ``http``: ``POST /v1/context`` (httpx);
- ``mcp``: the ``get_context`` tool through the official SDK's ``ClientSession`` after the
  ``initialize`` handshake (protocol 2025-11-25, what most MCP hosts speak), which also
  checks the structured bundle against the tool's output schema;
- ``mcp_modern``: the same through the SDK's ``mcp.Client`` in its default mode, which
  discovers the server and speaks the per-request protocol 2026-07-28;
- ``mcp_wire``: the same ``tools/call`` as one bare JSON-RPC POST (httpx, 2025-11-25):
  the server's MCP cost alone, without any client SDK.

The order rotates from query to query (and reverses on every other one), so each way runs
first, second, third and last equally often under the same load; figures are medians
(p50 per way, and the median of the per-query ratios). The target is judged on the
``ClientSession`` figure, the dearest of the official ones.

    python -m bench.mcp_latency [--chunks 3000] [--queries 60]

Target: MCP p50 <= 1.15x the /v1/context p50. The log (with the load average before and
after) goes to bench/results/mcp-<time>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from bench import corpus
from bench.timing import latency_ms
from contextd.core.settings import Settings
from contextd.ingest.chunking import Chunker
from contextd.runtime import Runtime
from contextd.state.keys import create_key
from contextd.state.principals import set_user_groups

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.15
REPO = Path(__file__).resolve().parents[1]


def build_index(data_dir: Path, chunks: int) -> str:
    """Ingest ``chunks`` chunks into ``data_dir``; returns an agent key."""
    runtime = Runtime(Settings(data_dir=data_dir))
    runtime.migrate()
    try:
        settings = runtime.settings
        records, _ = corpus.build(chunks, Chunker(settings.chunk_size, settings.chunk_overlap))
        for start in range(0, len(records), 512):
            runtime.ingestor.ingest(records[start:start + 512])
        set_user_groups(runtime.engine, user_id="ann", groups=["sales"])
        return create_key(runtime.engine, name="bench-mcp", role="agent")[1]
    finally:
        runtime.close()


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONTEXTD_DATA_DIR": str(data_dir), "CONTEXTD_PORT": str(port),
           "CONTEXTD_SCHEDULER_ENABLED": "false", "CONTEXTD_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
           "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "contextd.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("contextd serve did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(base: str, key: str, queries: list[str], warmup: int = 5,
                  ) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    ways = ("http", "mcp", "mcp_modern", "mcp_wire")
    samples: dict[str, list[float]] = {name: [] for name in ways}
    ratios: dict[str, list[float]] = {name: [] for name in ways[1:]}
    same = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http, \
            httpx2.AsyncClient(headers=headers, timeout=60) as http2, \
            httpx2.AsyncClient(headers=headers, timeout=60) as http2_modern, \
            streamable_http_client(f"{base}/mcp", http_client=http2) as (read, write), \
            ClientSession(read, write) as session, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http2_modern)) as client:
        await session.initialize()
        versions = {"mcp": session.protocol_version, "mcp_modern": client.protocol_version}

        async def via_http(query: str) -> tuple[float, list[str]]:
            started = time.perf_counter()
            resp = await http.post("/v1/context", json={"query": query, "user_id": "ann"})
            body = resp.json()
            seconds = time.perf_counter() - started
            assert resp.status_code == 200, resp.text
            return seconds, [i["id"] for i in body["items"]]

        async def via_mcp(query: str) -> tuple[float, list[str]]:
            started = time.perf_counter()
            result = await session.call_tool("get_context", {"query": query,
                                                             "user_id": "ann"})
            seconds = time.perf_counter() - started
            assert not result.is_error and result.structured_content, result.content
            return seconds, [i["id"] for i in result.structured_content["items"]]

        async def via_modern(query: str) -> tuple[float, list[str]]:
            started = time.perf_counter()
            result = await client.call_tool("get_context", {"query": query, "user_id": "ann"})
            seconds = time.perf_counter() - started
            assert not result.is_error and result.structured_content, result.content
            return seconds, [i["id"] for i in result.structured_content["items"]]

        wire_headers = {"Accept": "application/json, text/event-stream",
                        "Mcp-Protocol-Version": "2025-11-25"}

        async def via_wire(query: str) -> tuple[float, list[str]]:
            """The same tools/call as a bare JSON-RPC POST: the server's MCP cost alone,
            as any MCP client sees it on the wire (no Python SDK on the client side)."""
            started = time.perf_counter()
            resp = await http.post("/mcp", headers=wire_headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                    "name": "get_context", "arguments": {"query": query, "user_id": "ann"}}})
            body = resp.json()
            seconds = time.perf_counter() - started
            assert resp.status_code == 200 and "result" in body, resp.text[:300]
            return seconds, [i["id"] for i in body["result"]["structuredContent"]["items"]]

        steps = [("http", via_http), ("mcp", via_mcp), ("mcp_modern", via_modern),
                 ("mcp_wire", via_wire)]
        for number, query in enumerate([*queries[:warmup], *queries]):
            order = steps[number % len(steps):] + steps[:number % len(steps)]
            if number % 2:
                order.reverse()
            got = {name: await fn(query) for name, fn in order}
            if number >= warmup:
                # The same request four ways: the answers should hold the same items.
                same += all(ids == got["http"][1] for _, ids in got.values())
                for name, (seconds, _) in got.items():
                    samples[name].append(seconds)
                for name in ratios:
                    ratios[name].append(got[name][0] / got["http"][0])
    ms = {name: latency_ms(samples[name]) for name in ways}
    figures: dict[str, Any] = {f"{name}_ms": ms[name] for name in ways}
    for name in ratios:
        figures[f"{name}_ratio_of_p50"] = round(ms[name]["p50"] / ms["http"]["p50"], 3)
        figures[f"{name}_median_paired_ratio"] = round(statistics.median(ratios[name]), 3)
    figures |= {"ratio_of_p50": figures["mcp_ratio_of_p50"],
                "protocol_versions": versions | {"mcp_wire": "2025-11-25"},
                "samples": len(samples["http"]), "same_items_every_way": same}
    return figures


def run_suite(chunks: int = 3000, queries: int = 60) -> dict[str, Any]:
    """Build the index, serve it, measure; returns the figures (and whether the target
    holds)."""
    workdir = Path(tempfile.mkdtemp(prefix="contextd-bench-mcp-"))
    load_before = _load()
    try:
        key = build_index(workdir, chunks)
        port = _free_port()
        server = start_server(workdir, port)
        try:
            figures = asyncio.run(measure(f"http://127.0.0.1:{port}", key,
                                          corpus.queries(queries)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures |= {"corpus": corpus.source(), "chunks": chunks,
                "load_average": {"before": load_before, "after": _load()},
                "target": f"mcp p50 <= {TARGET}x /v1/context p50",
                "pass": figures["ratio_of_p50"] <= TARGET}
    return figures


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def report_line(figures: dict[str, Any]) -> str:
    def way(name: str, label: str) -> str:
        return (f"{label} p50 {figures[name + '_ms']['p50']:.2f} ms = "
                f"{figures[name + '_ratio_of_p50']:.3f}x "
                f"(paired {figures[name + '_median_paired_ratio']:.3f})")

    load = figures["load_average"]
    return (f"POST /v1/context p50 {figures['http_ms']['p50']:.2f} ms; MCP get_context: "
            f"{way('mcp', 'ClientSession (2025-11-25)')}; "
            f"{way('mcp_modern', 'mcp.Client (2026-07-28)')}; "
            f"{way('mcp_wire', 'bare JSON-RPC')}; {figures['samples']} queries, "
            f"{figures['chunks']} chunks, load average {load['before'][0]} -> "
            f"{load['after'][0]}; {'PASS' if figures['pass'] else 'FAIL'} "
            f"(ClientSession <= {TARGET}x)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_latency")
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    figures = run_suite(args.chunks, args.queries)
    line = report_line(figures)
    print(line)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M")
    (RESULTS / f"mcp-{stamp}.log").write_text(
        f"{line}\n{json.dumps(figures, indent=2)}\n")


if __name__ == "__main__":
    main()
