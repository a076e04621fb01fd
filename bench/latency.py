"""``python -m bench.latency DIR``: the ``/v1/context`` latency suite alone, repeatable.

``make bench`` spends most of its 45 minutes building the 50k-chunk index. To compare
changes to the request path, build that index once into ``DIR`` (the bench's own corpus
and ingest code) and rerun only the latency suite on it, as often as needed: each run
prints the same paired figures as ``make bench``, including the split between a query's
first search and a repeat. An index built by an older revision is reused as it is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench import corpus
from bench.__main__ import ingest_all, latency_suite
from contextd.core.settings import Settings
from contextd.ingest.chunking import Chunker
from contextd.runtime import Runtime
from contextd.state.principals import set_user_groups

BUILT = "bench-index-built"


def ensure_index(runtime: Runtime, data_dir: Path, chunks: int) -> None:
    """Ingest the bench corpus into ``data_dir`` unless a finished build is there; the
    marker is written last, so an interrupted build is redone from where it stopped
    (unchanged records are skipped)."""
    marker = data_dir / BUILT
    if marker.exists():
        print(f"index: reusing {data_dir} ({marker.read_text().strip()})")
        return
    chunker = Chunker(runtime.settings.chunk_size, runtime.settings.chunk_overlap)
    records, _ = corpus.build(chunks, chunker)
    started = time.perf_counter()
    ingest_all(runtime, records)
    marker.write_text(f"{chunks} chunks, {corpus.source()}\n")
    print(f"index: built {chunks} chunks in {time.perf_counter() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("data_dir", type=Path, help="kept between runs")
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(Settings(data_dir=args.data_dir))
    runtime.migrate()
    try:
        ensure_index(runtime, args.data_dir, args.chunks)
        set_user_groups(runtime.engine, user_id="ann", groups=["sales"])
        runtime.dense.encode_documents(["load and warm the model"] * 8)
        queries = corpus.queries(args.queries)
        for run in range(args.runs):
            lat = latency_suite(runtime, queries)
            embed, engine = lat["embed"]["p50"], lat["engine"]["p50"]
            context = lat["context"]["p50"]
            print(f"run {run}: embed-only {embed:.2f} ms, engine-only {engine:.2f} ms, "
                  f"/v1/context {context:.2f} ms = {context / (embed + engine):.3f}x "
                  f"(over by {context - embed - engine:.2f} ms); first search / repeat: "
                  f"engine {lat['engine_first']['p50']:.2f} / "
                  f"{lat['engine_repeat']['p50']:.2f} ms, context "
                  f"{lat['context_first']['p50']:.2f} / {lat['context_repeat']['p50']:.2f} ms")
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
