"""``make bench-quality``: ranking quality on public data and generated suites.

One line per suite and mode. Public sets (BEIR layout, ``--data``, default
``../shared/data``): SciFact, msmarco-subset, dbpedia-subset, business-reports-subset, their
documents given seeded dates spread over six years; modes dense, BM25, hybrid with score
fusion (the default) and with engine RRF, each with freshness off and on. Generated suites
(identifier lookups, dated version pairs, no-answer questions) run through the full bundle
path, freshness on. The sample company's golden set (``sample_data/golden.json``) runs with
freshness off and on. Document vectors are cached in ``bench/.cache`` between modes and
runs; only queries run the model again.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from bench.embed_cache import CachedEncoder
from bench.quality_suites import NOW, Suite, dated, generated
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.store import SearchMode
from contextd.core.types import PUBLIC, AccessScope, SourceRecord
from contextd.retrieval.evaluation import (
    BeirDataset,
    load_beir,
    ndcg_at,
    recall_at,
    reciprocal_rank,
    records,
)
from contextd.retrieval.schemas import ContextQuery
from contextd.retrieval.service import Retriever
from contextd.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SETS = ("scifact", "msmarco-subset", "dbpedia-subset", "business-reports-subset")
PUBLIC_SCOPE = AccessScope(frozenset({PUBLIC}))


class Bench:
    """Index builder and line printer shared by the suites."""

    def __init__(self, settings: Settings, encoder: CachedEncoder, out: Any) -> None:
        self.settings = settings
        self.encoder = encoder
        self.out = out
        self.lines: list[str] = []
        self.figures: dict[str, float] = {}
        self._dirs: list[Path] = []

    def runtime(self, docs: Iterable[SourceRecord]) -> Runtime:
        workdir = Path(tempfile.mkdtemp(prefix="contextd-quality-"))
        self._dirs.append(workdir)
        conf = self.settings.model_copy(update={"data_dir": workdir, "database_url": None,
                                                "qdrant_url": None})
        runtime = Runtime(conf, dense_encoder=self.encoder)  # type: ignore[arg-type]
        runtime.migrate()
        batch: list[SourceRecord] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == 512:
                runtime.ingestor.ingest(batch)
                batch = []
        if batch:
            runtime.ingestor.ingest(batch)
        self.encoder.save()
        optimize = getattr(runtime.store, "optimize", None)
        if optimize:
            optimize()
        return runtime

    def retriever(self, runtime: Runtime, **update: Any) -> Retriever:
        conf = runtime.settings.model_copy(update=update)
        return Retriever(store=runtime.store, dense=runtime.dense, sparse=runtime.sparse,
                         settings=conf, clock=lambda: NOW)

    def line(self, suite: str, mode: str, key: str, **values: float) -> None:
        parts = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in values.items())
        text = f"{suite:<24} {mode:<16} {parts}"
        self.lines.append(text)
        print(text, file=self.out, flush=True)
        for k, v in values.items():
            self.figures[f"{key}.{k}"] = float(v)

    def close(self) -> None:
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)


MODES: list[tuple[str, SearchMode, str, bool]] = [
    ("dense", "dense", "score", False), ("bm25", "sparse", "score", False),
    ("hybrid-rrf", "hybrid", "rrf", False), ("hybrid-rrf+fresh", "hybrid", "rrf", True),
    ("hybrid", "hybrid", "score", False), ("hybrid+fresh", "hybrid", "score", True),
]


def rank_docs(retriever: Retriever, text: str, mode: SearchMode,
              freshness: bool) -> tuple[list[str], float]:
    """Documents by their best chunk, and the best calibrated relevance."""
    hits = retriever.search(ContextQuery(query=text, user_id="eval"), PUBLIC_SCOPE,
                            limit=100, mode=mode, freshness=freshness)
    ranked = list(dict.fromkeys(str(h.hit.payload["source_id"]) for h in hits))
    return ranked[:100], max((h.relevance for h in hits), default=0.0)


def beir(bench: Bench, name: str, dataset: BeirDataset, seed: int) -> None:
    started = time.perf_counter()
    runtime = bench.runtime(dated(records(dataset), seed))
    floor = bench.settings.min_relevance
    try:
        for label, mode, fusion, fresh in MODES:
            retriever = bench.retriever(runtime, fusion=fusion)
            ndcg, mrr, recall, found = [], [], [], []
            for qid, text in dataset.queries.items():
                ranked, best = rank_docs(retriever, text, mode, fresh)
                judged = dataset.qrels[qid]
                ndcg.append(ndcg_at(ranked, judged))
                mrr.append(reciprocal_rank(ranked, judged))
                recall.append(recall_at(ranked, judged))
                found.append(best >= floor)
            n = len(ndcg)
            values: dict[str, Any] = {"nDCG@10": sum(ndcg) / n, "MRR": sum(mrr) / n,
                                      "R@100": sum(recall) / n}
            if fusion == "score" and mode == "hybrid":
                values["found"] = sum(found) / n
            bench.line(name, label, f"{name}.{label}", **values, queries=n)
    finally:
        runtime.close()
    print(f"# {name}: {len(dataset.corpus)} documents, {time.perf_counter() - started:.0f}s",
          file=bench.out, flush=True)


def _bundle(retriever: Retriever, text: str, **kw: Any) -> Any:
    query = ContextQuery(query=text, user_id="eval", include_memory=False, **kw)
    return retriever.bundle(query, PUBLIC_SCOPE)


def suites(bench: Bench, suite: Suite, background: Sequence[SourceRecord],
           cross_domain: Sequence[str]) -> None:
    """Identifier, version and no-answer suites on one index: the generated records plus
    a public corpus as background."""
    runtime = bench.runtime([*background, *suite.records])
    try:
        for fresh in (False, True):
            retriever = bench.retriever(runtime)
            label = "hybrid+fresh" if fresh else "hybrid"
            kw = {"freshness_enabled": fresh, "top_k": 10, "token_budget": 4000}
            first = [_first_ids(retriever, q, kw)[:1] == [want]
                     for q, want in suite.identifier_queries]
            bench.line("identifiers", label, f"identifiers.{label}",
                       rank1=sum(first) / len(first), queries=len(first))
            current = [_first_ids(retriever, q, kw)[:1] == [new]
                       for q, new, _ in suite.current_queries]
            old = [want in _first_ids(retriever, q, kw)[:3] for q, want in suite.old_queries]
            bench.line("versions", label, f"versions.{label}",
                       current_first=sum(current) / len(current),
                       old_top3=sum(old) / len(old), queries=len(current) + len(old))
            answerable = [_bundle(retriever, q, **kw).found for q in suite.answerable]
            absent = [*suite.no_answer, *cross_domain]
            missing = [not _bundle(retriever, q, **kw).found for q in absent]
            bench.line("no-answer", label, f"no_answer.{label}",
                       found_false=sum(missing) / len(missing),
                       answerable_found=sum(answerable) / len(answerable),
                       queries=len(missing) + len(answerable))
        as_of_check(bench, runtime, suite)
    finally:
        runtime.close()


def as_of_check(bench: Bench, runtime: Runtime, suite: Suite) -> None:
    """``as_of`` between two versions serves the old one and nothing written later."""
    retriever = bench.retriever(runtime)
    by_id = {r.source_id: r for r in suite.records}
    ok = later = 0
    for question, new, old in suite.current_queries:
        at = by_id[old].updated_at + (by_id[new].updated_at - by_id[old].updated_at) / 2
        bundle = _bundle(retriever, question, as_of=at, top_k=10, token_budget=4000)
        ids = [i.source_id for i in bundle.items]
        ok += bool(ids) and ids[0] == old
        later += any(i.updated_at > at.isoformat() for i in bundle.items)
    n = len(suite.current_queries)
    bench.line("as_of", "hybrid+fresh", "as_of", old_first=ok / n,
               later_served=float(later), queries=n)


def _first_ids(retriever: Retriever, text: str, kw: dict[str, Any]) -> list[str]:
    return [i.source_id for i in _bundle(retriever, text, **kw).items]


def golden(bench: Bench, data: Path) -> None:
    """The sample company's golden set, freshness off and on, through the bundle path."""
    from contextd.demo import load_demo

    spec = json.loads((data / "golden.json").read_text())
    workdir = Path(tempfile.mkdtemp(prefix="contextd-golden-"))
    bench._dirs.append(workdir)
    conf = bench.settings.model_copy(update={
        "data_dir": workdir, "database_url": None, "qdrant_url": None,
        "scheduler_enabled": False, "filesystem_allowed_roots": [data.resolve()]})
    runtime = Runtime(conf, dense_encoder=bench.encoder)  # type: ignore[arg-type]
    runtime.migrate()
    try:
        load_demo(runtime, data)
        from contextd.state.principals import effective_principals

        for fresh in (False, True):
            retriever = bench.retriever(runtime)
            scores = []
            for q in spec["queries"]:
                user = q.get("user_id", "eval")
                scope = AccessScope(effective_principals(runtime.engine, user_id=user))
                bundle = retriever.bundle(ContextQuery(
                    query=q["text"], user_id=user, include_memory=False,
                    freshness_enabled=fresh), scope)
                ranked = list(dict.fromkeys(i.source_id for i in bundle.items))
                scores.append(ndcg_at(ranked, spec["qrels"][q["id"]]))
            label = "hybrid+fresh" if fresh else "hybrid"
            bench.line("golden (sample_data)", label, f"golden.{label}",
                       **{"nDCG@10": sum(scores) / len(scores)}, queries=len(scores))
    finally:
        runtime.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--queries", type=int, default=0,
                        help="at most this many queries per public set (0: all)")
    parser.add_argument("--skip-suites", action="store_true")
    parser.add_argument("--golden-only", action="store_true",
                        help="only the sample company's golden set")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    inner = SentenceTransformerEncoder(settings.embedding_model)
    encoder = CachedEncoder(inner, ROOT / "bench" / ".cache")
    out_path = args.out or RESULTS / f"quality-{date.today().isoformat()}.log"
    bench = Bench(settings, encoder, sys.stdout)
    started = time.perf_counter()
    header = (f"# bench-quality {date.today()}  fusion={settings.fusion} "
              f"dense_weight={settings.dense_weight} freshness_weight="
              f"{settings.freshness_weight} floor={settings.freshness_floor} "
              f"feedback_docs={settings.feedback_docs} feedback_weight="
              f"{settings.feedback_weight} prefetch={settings.prefetch_limit} "
              f"min_relevance={settings.min_relevance}")
    print(header, flush=True)
    try:
        loaded: dict[str, BeirDataset] = {}
        for name in [s for s in args.sets.split(",") if s and not args.golden_only]:
            directory = args.data / name
            if not directory.is_dir():
                print(f"# {name}: not found under {args.data}, skipped", flush=True)
                continue
            dataset = load_beir(directory)
            if args.queries:
                keep = dict(list(dataset.queries.items())[:args.queries])
                dataset = replace(dataset, queries=keep,
                                  qrels={q: dataset.qrels[q] for q in keep})
            loaded[name] = dataset
            beir(bench, name, dataset, seed=args.seed + zlib.crc32(name.encode()) % 1000)
        if args.golden_only:
            golden(bench, ROOT / "sample_data")
        elif not args.skip_suites:
            suite = generated(args.seed)
            background = _background(args.data)
            rng = random.Random(args.seed)
            cross = _cross_domain(args.data, rng)
            suites(bench, suite, background, cross)
            golden(bench, ROOT / "sample_data")
    finally:
        bench.close()
    took = time.perf_counter() - started
    print(f"# took {took:.0f}s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join([header, *bench.lines, f"# took {took:.0f}s", ""]))
    (out_path.with_suffix(".json")).write_text(json.dumps(bench.figures, indent=1))
    return 0


def _background(data: Path) -> list[SourceRecord]:
    """business-reports-subset as the distractor corpus of the generated suites."""
    directory = data / "business-reports-subset"
    if not directory.is_dir():
        return []
    return list(dated(records(load_beir(directory)), seed=7))


def _cross_domain(data: Path, rng: random.Random) -> list[str]:
    """Questions of other corpora (biomedical claims, entity lookups) the business
    background and the generated records hold no answer to."""
    out: list[str] = []
    for name in ("scifact", "dbpedia-subset"):
        directory = data / name
        if directory.is_dir():
            queries = list(load_beir(directory).queries.values())
            out.extend(rng.sample(queries, min(20, len(queries))))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
