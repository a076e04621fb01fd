"""MCP ``get_context`` against ``POST /v1/context``: what the MCP layer adds to a request.

One small index (BEIR passages, ACLs as in ``make bench``) served by ``contextd serve`` in
its own process; this process is the client. Per query, in alternating order, the same
request goes once as ``POST /v1/context`` (httpx) and once as the ``get_context`` tool
(the official ``mcp`` client over streamable HTTP, one session), both over loopback to the
same server, timed to the parsed answer. Paired samples under the same load, so the ratio
of medians holds on a noisy shared machine.

    python -m bench.mcp_latency [--chunks 3000] [--queries 60]

Target: MCP p50 <= 1.15x the /v1/context p50. The log goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import ClientSession
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
    samples: dict[str, list[float]] = {"http": [], "mcp": [], "mcp_wire": []}
    ratios: list[float] = []
    wire_ratios: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http, \
            httpx2.AsyncClient(headers=headers, timeout=60) as http2, \
            streamable_http_client(f"{base}/mcp", http_client=http2) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()

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

        steps = [("http", via_http), ("mcp", via_mcp), ("mcp_wire", via_wire)]
        for number, query in enumerate([*queries[:warmup], *queries]):
            order = steps[number % 3:] + steps[:number % 3]
            if number % 2:
                order.reverse()
            got = {name: await fn(query) for name, fn in order}
            if number >= warmup:
                for name, (seconds, _) in got.items():
                    samples[name].append(seconds)
                ratios.append(got["mcp"][0] / got["http"][0])
                wire_ratios.append(got["mcp_wire"][0] / got["http"][0])
    http_ms, mcp_ms = latency_ms(samples["http"]), latency_ms(samples["mcp"])
    wire_ms = latency_ms(samples["mcp_wire"])
    ratios.sort()
    wire_ratios.sort()
    return {"http_ms": http_ms, "mcp_ms": mcp_ms, "mcp_wire_ms": wire_ms,
            "ratio_of_p50": round(mcp_ms["p50"] / http_ms["p50"], 3),
            "wire_ratio_of_p50": round(wire_ms["p50"] / http_ms["p50"], 3),
            "median_paired_ratio": round(ratios[len(ratios) // 2], 3),
            "median_paired_wire_ratio": round(wire_ratios[len(wire_ratios) // 2], 3),
            "samples": len(samples["http"])}


def run_suite(chunks: int = 3000, queries: int = 60) -> dict[str, Any]:
    """Build the index, serve it, measure; returns the figures (and whether the target
    holds)."""
    workdir = Path(tempfile.mkdtemp(prefix="contextd-bench-mcp-"))
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
                "target": f"mcp p50 <= {TARGET}x /v1/context p50",
                "pass": figures["ratio_of_p50"] <= TARGET}
    return figures


def report_line(figures: dict[str, Any]) -> str:
    return (f"MCP get_context p50 {figures['mcp_ms']['p50']:.2f} ms vs POST /v1/context p50 "
            f"{figures['http_ms']['p50']:.2f} ms = {figures['ratio_of_p50']:.3f}x "
            f"(median paired ratio {figures['median_paired_ratio']:.3f}, "
            f"{figures['samples']} pairs, {figures['chunks']} chunks); bare JSON-RPC "
            f"tools/call p50 {figures['mcp_wire_ms']['p50']:.2f} ms = "
            f"{figures['wire_ratio_of_p50']:.3f}x "
            f"(paired {figures['median_paired_wire_ratio']:.3f}) "
            f"{'PASS' if figures['pass'] else 'FAIL'} <= {TARGET}x")


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
