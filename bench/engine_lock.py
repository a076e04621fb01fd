"""``python -m bench.engine_lock``: does a Qdrant Edge query hold Python's interpreter lock?

Why it matters: under concurrent requests the API process is bound by its interpreter
lock (docs/performance.md#what-bounds-32-clients-on-two-cores). A query that released the
lock would overlap with other requests' Python; one that holds it adds its whole time to
the serial part of every request.

Two measurements on a shard of random vectors (cosine distance), both in this process:

- queries per second from one thread, then from two (on two cores, about 2x if the
  engine runs outside the lock, about 1x if it holds it);
- a thread counting in a Python loop, alone and while another thread queries (about the
  same count if the engine runs outside the lock, about half if it holds it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    UpdateOperation,
)

DIM = 384


def build(path: Path, points: int) -> EdgeShard:
    shard = EdgeShard.create(str(path), EdgeConfig(
        vectors={"dense": EdgeVectorParams(size=DIM, distance=Distance.Cosine)}))
    rng = np.random.default_rng(7)
    for start in range(0, points, 500):
        vectors = rng.standard_normal((min(500, points - start), DIM)).astype(np.float32)
        shard.update(UpdateOperation.upsert_points([
            Point(start + n, {"dense": v.tolist()}, {"n": start + n})
            for n, v in enumerate(vectors)]))
    return shard


def run_for(seconds: float, stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Start ``threads``, let them run ``seconds``, then stop and join them."""
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()


def query_rate(shard: EdgeShard, batch: QueryBatchRequest, threads: int, seconds: float) -> float:
    """Batches answered per second by ``threads`` threads querying for ``seconds``."""
    done = [0] * threads
    stop = threading.Event()

    def work(slot: int) -> None:
        while not stop.is_set():
            shard.query_batch(batch)
            done[slot] += 1

    run_for(seconds, stop, [threading.Thread(target=work, args=(n,)) for n in range(threads)])
    return sum(done) / seconds


def spin_rate(seconds: float, shard: EdgeShard | None = None,
              batch: QueryBatchRequest | None = None) -> float:
    """Python loop iterations per second, alone or beside a thread querying ``shard``."""
    stop = threading.Event()
    counted = [0]

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        counted[0] = n

    def query(engine: EdgeShard, request: QueryBatchRequest) -> None:
        while not stop.is_set():
            engine.query_batch(request)

    threads = [threading.Thread(target=spin)]
    if shard is not None and batch is not None:
        threads.append(threading.Thread(target=query, args=(shard, batch)))
    run_for(seconds, stop, threads)
    return counted[0] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_lock")
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="contextd-bench-engine-lock-"))
    try:
        shard = build(workdir / "shard", args.points)
        rng = np.random.default_rng(11)
        # A bundle's two legs in one batch, as the Edge store asks them (100 hits each).
        batch = QueryBatchRequest([
            QueryRequest(limit=100, query=Query.Nearest(rng.standard_normal(DIM).tolist(),
                                                        using="dense"),
                         with_payload=False, with_vector=False) for _ in range(2)])
        scaling, spins = [], []
        for _ in range(args.rounds):
            one = query_rate(shard, batch, 1, args.seconds)
            two = query_rate(shard, batch, 2, args.seconds)
            alone = spin_rate(args.seconds)
            beside = spin_rate(args.seconds, shard, batch)
            scaling.append(two / one)
            spins.append(beside / alone)
            print(f"  1 thread {one:.0f} batches/s, 2 threads {two:.0f} ({two / one:.2f}x); "
                  f"a Python loop beside a querying thread runs at {beside / alone:.2f}x "
                  "its speed alone", flush=True)
        scale, spin = statistics.median(scaling), statistics.median(spins)
        holds = scale < 1.5 and spin < 0.75
        print(f"{args.points} points, {DIM} dimensions, two 100-hit legs per batch: "
              f"2 threads {scale:.2f}x of 1, Python beside a query {spin:.2f}x of alone "
              f"(medians of {args.rounds}): the engine "
              f"{'holds' if holds else 'does not hold'} the interpreter lock while it searches")
        shard.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
