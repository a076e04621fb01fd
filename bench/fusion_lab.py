"""Fusion schemes compared on the same engine legs: how retrieval/scoring.py was chosen.

``python -m bench.fusion_lab --data ../shared/data`` indexes each public set through the
product's pipeline (document vectors from ``bench/.cache``), asks the store for both legs
of every query once at a deep prefetch (``legs=True``, as the retriever does), keeps them
in ``bench/.cache/lab``, and prints nDCG@10 per scheme and set: rank fusion, score fusion
with each leg normalised by its maximum, min-max or DBSF (mean +- 3 sd), and the product's
own :func:`contextd.retrieval.scoring.score` with and without pseudo-relevance feedback.
Freshness off; documents by their best chunk; prefetch 100 per leg as the product.
``make bench-quality`` is the bench; this is the exploration behind its defaults.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.embed_cache import CachedEncoder
from bench.quality import PUBLIC_SCOPE, ROOT, Bench
from bench.quality_suites import NOW, dated
from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.store import DENSE, SPARSE, SearchQuery
from contextd.retrieval.evaluation import load_beir, ndcg_at, records
from contextd.retrieval.scoring import parse_ts

LAB = ROOT / "bench" / ".cache" / "lab"


def collect(name: str, data: Path, depth: int, settings: Settings,
            encoder: CachedEncoder) -> dict[str, Any]:
    path = LAB / f"{name}-{depth}v.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    dataset = load_beir(data / name)
    bench = Bench(settings, encoder, sys.stderr)
    started = time.perf_counter()
    runtime = bench.runtime(dated(records(dataset), 20 + zlib.crc32(name.encode()) % 1000))
    print(f"# {name}: indexed in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    out: dict[str, Any] = {"qrels": dataset.qrels, "queries": {}, "chunks": {},
                           "text": dict(dataset.queries), "qvec": {}}
    try:
        for qid, text in dataset.queries.items():
            qvec = encoder.encode_query(text)
            out["qvec"][qid] = qvec
            sparse = runtime.sparse.encode_query(text)
            hits = runtime.store.search(SearchQuery(
                scope=PUBLIC_SCOPE, limit=depth, dense=qvec.tolist(), sparse=sparse,
                mode="hybrid", prefetch_limit=depth, with_vectors=True, legs=True))
            rows = []
            for h in hits:
                if h.id not in out["chunks"]:
                    out["chunks"][h.id] = (np.asarray(h.dense, dtype=np.float16),
                                           str(h.payload.get("title") or ""),
                                           str(h.payload.get("text") or ""))
                cos = h.legs[DENSE][1] if DENSE in h.legs else float(
                    np.dot(qvec, np.asarray(h.dense, dtype=np.float32)))
                rows.append((str(h.payload["source_id"]), cos,
                             h.legs[SPARSE][1] if SPARSE in h.legs else np.nan,
                             h.legs[DENSE][0] if DENSE in h.legs else 10**6,
                             h.legs[SPARSE][0] if SPARSE in h.legs else 10**6,
                             (NOW - parse_ts(h.payload["updated_at"])).total_seconds() / 86400,
                             h.id))
            out["queries"][qid] = rows
    finally:
        runtime.close()
        bench.close()
    encoder.save()
    LAB.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def ndcg_of(data: dict[str, Any], fuse: Any, depth: int = 100) -> float:
    scores = []
    for qid, rows in data["queries"].items():
        docs = [r[0] for r in rows]
        cos = np.array([r[1] for r in rows])
        bm = np.array([r[2] for r in rows])
        dr = np.array([r[3] for r in rows])
        br = np.array([r[4] for r in rows])
        age = np.array([r[5] for r in rows])
        keep = (dr < depth) | (br < depth)
        bm = np.where(br < depth, bm, np.nan)
        s = fuse(cos[keep], bm[keep], dr[keep], br[keep], age[keep])
        kept = [d for d, k in zip(docs, keep, strict=True) if k]
        order = np.argsort(-s, kind="stable")
        ranked = list(dict.fromkeys(kept[i] for i in order))
        scores.append(ndcg_at(ranked, data["qrels"][qid]))
    return float(np.mean(scores))



# ---- variants -------------------------------------------------------------------------

def _nan0(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), 0.0, x)


def n_raw(x: np.ndarray) -> np.ndarray:
    return _nan0(x)


def n_max(x: np.ndarray) -> np.ndarray:
    m = np.nanmax(x) if np.any(~np.isnan(x)) else 0.0
    return _nan0(x / m) if m > 0 else np.zeros_like(x)


def n_minmax(x: np.ndarray) -> np.ndarray:
    if not np.any(~np.isnan(x)):
        return np.zeros_like(x)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return _nan0((x - lo) / (hi - lo)) if hi > lo else _nan0(x * 0 + 1.0)


def n_z(x: np.ndarray) -> np.ndarray:
    if not np.any(~np.isnan(x)):
        return np.zeros_like(x)
    mu, sd = np.nanmean(x), np.nanstd(x)
    if sd == 0:
        return _nan0(x * 0 + 1.0)
    return np.clip(_nan0((x - (mu - 3 * sd)) / (6 * sd)), 0, 1)


def n_zraw(x: np.ndarray) -> np.ndarray:
    if not np.any(~np.isnan(x)):
        return np.zeros_like(x)
    mu, sd = np.nanmean(x), np.nanstd(x)
    z = (x - mu) / sd if sd > 0 else x * 0
    lo = np.nanmin(z)
    return np.where(np.isnan(z), lo, z)


NORMS = {"raw": n_raw, "max": n_max, "mm": n_minmax, "dbsf": n_z, "z": n_zraw}


def convex(nd: str, nb: str, w: float, fresh: float = 0.0, floor: float = 0.75,
           half: float = 180.0) -> Any:
    def f(cos, bm, dr, br, age):  # type: ignore[no-untyped-def]
        s = w * NORMS[nd](cos) + (1 - w) * NORMS[nb](bm)
        if fresh:
            s = s + fresh * (floor + (1 - floor) * 0.5 ** (age / half))
        return s
    return f


def rrf(k: int = 60, w: float = 0.5) -> Any:
    def f(cos, bm, dr, br, age):  # type: ignore[no-untyped-def]
        return w / (k + dr + 1) + (1 - w) * np.where(br < 10**6, 1 / (k + br + 1), 0)
    return f


def dense_only(cos, bm, dr, br, age):  # type: ignore[no-untyped-def]
    return np.where(dr < 10**6, cos, -9)


def bm25_only(cos, bm, dr, br, age):  # type: ignore[no-untyped-def]
    return np.where(br < 10**6, _nan0(bm), -9)


def load(name: str, depth: int = 300) -> dict[str, Any]:
    path = LAB / f"{name}-{depth}v.pkl"
    if not path.is_file():
        path = LAB / f"{name}-{depth}.pkl"
    return pickle.loads(path.read_bytes())


# ---- the product's score on the stored legs ------------------------------------------

def product_ndcg(data: dict[str, Any], weights: Any, depth: int = 100) -> float:
    """nDCG@10 of :func:`contextd.retrieval.scoring.score` on the stored legs (hits a
    prefetch of ``depth`` per leg would have returned)."""
    from datetime import timedelta

    from contextd.core.store import ScoredChunk
    from contextd.retrieval.exact import exact_terms
    from contextd.retrieval.scoring import score

    out = []
    for qid, rows in data["queries"].items():
        hits = []
        for r in rows:
            if not (r[3] < depth or r[4] < depth):
                continue
            vec, title, text = data["chunks"][r[6]]
            legs = {}
            if r[3] < depth:
                legs[DENSE] = (int(r[3]), float(r[1]))
            if r[4] < depth:
                legs[SPARSE] = (int(r[4]), float(r[2]))
            hits.append(ScoredChunk(id=r[6], score=0.0, payload={
                "source_id": r[0], "kind": "document", "title": title, "text": text,
                "updated_at": (NOW - timedelta(days=r[5])).isoformat()},
                dense=vec.astype(np.float32), legs=legs))
        ranked = score(hits, data["qvec"][qid], weights=weights,
                       terms=exact_terms(data["text"][qid]), now=NOW, half_lives=None)
        docs = list(dict.fromkeys(str(c.hit.payload["source_id"]) for c in ranked))
        out.append(ndcg_at(docs, data["qrels"][qid]))
    return float(np.mean(out))


def main() -> int:
    from contextd.retrieval.scoring import Weights

    parser = argparse.ArgumentParser(prog="python -m bench.fusion_lab", description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default="msmarco-subset,dbpedia-subset,"
                                          "business-reports-subset,scifact")
    parser.add_argument("--depth", type=int, default=300)
    args = parser.parse_args()
    settings = Settings()
    encoder = CachedEncoder(SentenceTransformerEncoder(settings.embedding_model),
                            ROOT / "bench" / ".cache")
    names = [n for n in args.sets.split(",") if (args.data / n).is_dir()]
    sets = {n: collect(n, args.data, args.depth, settings, encoder) for n in names}

    def product(w: float, docs: int) -> Any:
        return Weights(dense_weight=w, freshness_weight=settings.freshness_weight,
                       floor=settings.freshness_floor,
                       calibration=settings.relevance_calibration, feedback_docs=docs,
                       feedback_weight=settings.feedback_weight)

    schemes: list[tuple[str, Any, bool]] = [
        ("dense", dense_only, False), ("bm25", bm25_only, False),
        ("rrf k=60", rrf(60), False)]
    for w in (0.6, 0.7, 0.8, 0.9):
        schemes += [(f"cos+bm25/max w={w}", convex("raw", "max", w), False),
                    (f"minmax w={w}", convex("mm", "mm", w), False),
                    (f"dbsf w={w}", convex("dbsf", "dbsf", w), False)]
    for w in (0.7, 0.8):
        for docs in (0, 3, 5, 10):
            schemes.append((f"score() w={w} feedback={docs}", product(w, docs), True))
    print(f"{'scheme':34}" + "".join(f"{n[:14]:>16}" for n in names))
    for label, scheme, is_product in schemes:
        cells = [product_ndcg(sets[n], scheme) if is_product else ndcg_of(sets[n], scheme)
                 for n in names]
        print(f"{label:34}" + "".join(f"{c:16.3f}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
