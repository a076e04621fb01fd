"""``make bench``: ingest throughput, re-ingest, /v1/context latency, LlamaIndex baseline.

Every target is a ratio against a baseline measured in this process on the same data;
the machine is small and shared, so latencies are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import corpus, llamaindex_baseline
from bench.timing import latency_ms, timed
from contextd.api.app import create_app
from contextd.core.settings import Settings
from contextd.core.store import Freshness, SearchQuery
from contextd.core.types import AccessScope
from contextd.ingest.chunking import Chunker
from contextd.memory.keys import create_key
from contextd.memory.principals import effective_principals, set_user_groups
from contextd.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"
BATCH_RECORDS = 512


def ingest_all(runtime: Runtime, records: list[Any]) -> dict[str, float]:
    embedded = unchanged = 0
    started = time.perf_counter()
    for start in range(0, len(records), BATCH_RECORDS):
        stats = runtime.ingestor.ingest(records[start:start + BATCH_RECORDS])
        embedded += stats.chunks_embedded
        unchanged += stats.unchanged
    ingest_s = time.perf_counter() - started
    optimize_s, _ = timed(lambda: getattr(runtime.store, "optimize", lambda: None)())
    return {"seconds": ingest_s, "optimize_s": optimize_s, "embedded": embedded,
            "unchanged": unchanged}


def context_latency(runtime: Runtime, queries: list[str], telemetry: bool) -> dict[str, float]:
    """POST /v1/context through the whole ASGI app (middleware, auth, validation), in-process:
    httpx's ASGITransport in one event loop, so no socket or cross-thread portal is timed."""
    runtime.settings = runtime.settings.model_copy(update={"telemetry_enabled": telemetry})
    app = create_app(runtime=runtime)
    _, key = create_key(runtime.engine, name="bench", role="agent")
    headers = {"Authorization": f"Bearer {key}"}

    async def measure() -> list[float]:
        samples = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for query in [*queries[:5], *queries]:
                started = time.perf_counter()
                resp = await client.post("/v1/context", headers=headers,
                                         json={"query": query, "user_id": "ann"})
                samples.append(time.perf_counter() - started)
                assert resp.status_code == 200, resp.text
        return samples[5:]

    return latency_ms(asyncio.run(measure()))


def parts_latency(runtime: Runtime, queries: list[str]) -> dict[str, Any]:
    """Embed-only and engine-only, as the retriever calls them for the same request."""
    settings = runtime.settings
    scope = AccessScope(effective_principals(runtime.engine, user_id="ann"))
    open_scope = AccessScope(frozenset({"public", "group:sales", "group:finance",
                                        "group:support", "user:ann"}))
    fresh = Freshness(now=time_now(), half_life_seconds={
        k: v * 86400 for k, v in settings.half_life_days.items()}, floor=settings.freshness_floor)
    embed, engine, engine_open = [], [], []
    for query in queries:
        t, (dense, sparse) = timed(lambda q=query: (runtime.dense.encode_query(q),
                                                    runtime.sparse.encode_query(q)))
        embed.append(t)
        for target, sc in ((engine, scope), (engine_open, open_scope)):
            request = SearchQuery(scope=sc, limit=60, dense=dense.tolist(), sparse=sparse,
                                  prefetch_limit=settings.prefetch_limit, rrf_k=settings.rrf_k,
                                  freshness=fresh, with_vectors=True)
            target.append(timed(lambda r=request: runtime.store.search(r))[0])
    return {"embed": latency_ms(embed), "engine": latency_ms(engine),
            "engine_all_groups": latency_ms(engine_open)}


def time_now():  # type: ignore[no-untyped-def]
    from contextd.core.types import utcnow

    return utcnow()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline-queries", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="3000 chunks, 50 queries")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.queries, args.baseline_queries = 3000, 50, 20
    workdir = Path(tempfile.mkdtemp(prefix="contextd-bench-"))
    runtime = Runtime(Settings(data_dir=workdir))
    try:
        report = run(runtime, args)
    finally:
        runtime.close()
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


def run(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    settings = runtime.settings
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    records, texts = corpus.build(args.chunks, chunker)
    queries = corpus.queries(args.queries)
    encoder = runtime.dense
    encoder.encode_documents(texts[:64])  # load and warm the model before any timing
    print(f"corpus: {len(records)} records, {len(texts)} chunks; {len(queries)} queries")

    raw_s, vectors = timed(lambda: encoder.encode_documents(texts))
    raw_rate = len(texts) / raw_s
    print(f"raw model.encode:        {raw_rate:8.1f} chunks/s ({raw_s:.1f}s)")
    first = ingest_all(runtime, records)
    ours_rate = first["embedded"] / first["seconds"]
    print(f"contextd ingest:         {ours_rate:8.1f} chunks/s ({first['seconds']:.1f}s, "
          f"+{first['optimize_s']:.1f}s index build)  ratio {ours_rate / raw_rate:.2f}x")
    again = ingest_all(runtime, records)
    speedup = first["seconds"] / again["seconds"]
    print(f"re-ingest unchanged:     {again['seconds']:.2f}s, embedded {again['embedded']}, "
          f"{speedup:.0f}x faster than first ingest")

    set_user_groups(runtime.engine, user_id="ann", groups=["sales"])
    parts = parts_latency(runtime, queries)
    on = context_latency(runtime, queries, telemetry=True)
    off = context_latency(runtime, queries, telemetry=False)
    budget = parts["embed"]["p50"] + parts["engine"]["p50"]
    print(f"embed-only p50 {parts['embed']['p50']:.2f} ms; engine-only p50 "
          f"{parts['engine']['p50']:.2f} ms (all groups {parts['engine_all_groups']['p50']:.2f})")
    print(f"/v1/context p50 {on['p50']:.2f} ms p95 {on['p95']:.2f} ms "
          f"= {on['p50'] / budget:.2f}x (embed + engine); telemetry off p50 {off['p50']:.2f} ms "
          f"(overhead {100 * (on['p50'] / off['p50'] - 1):+.1f}%)")
    baseline = llamaindex_baseline.run(encoder, texts, vectors, queries[:args.baseline_queries])
    print(f"LlamaIndex + qdrant local: insert {baseline['insert_s']}s; retrieve p50 "
          f"{baseline['p50']:.1f} ms p95 {baseline['p95']:.1f} ms; contextd is "
          f"{baseline['p50'] / on['p50']:.1f}x faster")

    targets = {
        "ingest >= 0.8x raw encode": ours_rate / raw_rate >= 0.8,
        "re-ingest unchanged >= 20x faster": speedup >= 20 and again["embedded"] == 0,
        "context p50 <= 1.3x embed+engine": on["p50"] <= 1.3 * budget,
        "context >= 20x faster than LlamaIndex baseline": baseline["p50"] / on["p50"] >= 20,
        "telemetry overhead <= 5%": on["p50"] <= 1.05 * off["p50"],
    }
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return {
        "chunks": len(texts), "records": len(records), "queries": len(queries),
        "raw_encode_chunks_per_s": round(raw_rate, 1), "ingest_chunks_per_s": round(ours_rate, 1),
        "ingest_ratio": round(ours_rate / raw_rate, 3), "index_build_s": round(
            first["optimize_s"], 1), "first_ingest_s": round(first["seconds"], 1),
        "reingest_s": round(again["seconds"], 2), "reingest_speedup": round(speedup, 1),
        "embed_ms": parts["embed"], "engine_ms": parts["engine"],
        "engine_all_groups_ms": parts["engine_all_groups"], "context_ms": on,
        "context_telemetry_off_ms": off, "context_over_parts": round(on["p50"] / budget, 3),
        "llamaindex": baseline, "speedup_vs_llamaindex": round(baseline["p50"] / on["p50"], 1),
        "targets": targets,
    }


if __name__ == "__main__":
    main()
