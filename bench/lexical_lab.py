"""Lexical-side variants of hybrid ranking, compared offline on the public sets.

``python -m bench.lexical_lab --data ../shared/data`` chunks each set as ingest does, takes
the chunk and query vectors from ``bench/.cache`` (run ``make bench-quality`` first), and
re-implements both engine legs in numpy: exact cosine, and BM25 from the product's own
:class:`contextd.core.embedder.Bm25Encoder` term vectors with the engine's IDF
(``ln(1 + (N - n + 0.5) / (n + 0.5))``). Each leg keeps its top ``prefetch`` chunks and the
product's :func:`contextd.retrieval.scoring.score` ranks their union (freshness off,
documents by their best chunk), so a variant of the lexical evidence (title weight in the
document vectors, expansion terms from the leading candidates, BM25 normalisation) is one
function here instead of a re-index.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.embed_cache import CachedEncoder
from bench.quality import ROOT
from bench.quality_suites import NOW, dated
from contextd.core.embedder import Bm25Encoder, SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.store import DENSE, SPARSE, ScoredChunk
from contextd.ingest.chunking import Chunker
from contextd.ingest.pipeline import embed_text
from contextd.retrieval.evaluation import load_beir, ndcg_at, records
from contextd.retrieval.exact import exact_terms
from contextd.retrieval.scoring import Weights, content_words, score


@dataclass
class LabSet:
    name: str
    qrels: dict[str, dict[str, int]]
    queries: dict[str, str]
    qvec: dict[str, np.ndarray]
    doc: list[str]  # source_id per chunk
    title: list[str]
    text: list[str]
    age: np.ndarray
    dense: np.ndarray  # chunks x dim
    bm25: dict[int, Any] = field(default_factory=dict)  # title weight -> Lexical


@dataclass
class Lexical:
    matrix: sp.csr_matrix  # chunks x terms, BM25 term values (no IDF)
    idf: np.ndarray
    column: dict[int, int]  # term hash -> column

    def query(self, indices: list[int], weights: list[float] | None = None) -> np.ndarray:
        cols = [self.column[i] for i in indices if i in self.column]
        wts = [w for i, w in zip(indices, weights or [1.0] * len(indices), strict=True)
               if i in self.column]
        if not cols:
            return np.zeros(self.matrix.shape[0])
        q = np.zeros(self.matrix.shape[1])
        q[cols] = np.asarray(wts) * self.idf[cols]
        return np.asarray(self.matrix @ q).ravel()


def lexical(texts: list[str], encoder: Bm25Encoder) -> Lexical:
    column: dict[int, int] = {}
    rows, cols, vals = [], [], []
    for r, t in enumerate(texts):
        v = encoder.encode_document(t)
        for i, x in zip(v.indices, v.values, strict=True):
            rows.append(r)
            cols.append(column.setdefault(i, len(column)))
            vals.append(x)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(column)))
    n = len(texts)
    df = np.bincount(np.asarray(cols), minlength=len(column))
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    return Lexical(m, idf, column)


def load(name: str, data: Path, settings: Settings, encoder: CachedEncoder,
         seed: int = 20) -> LabSet:
    dataset = load_beir(data / name)
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    doc, title, text, age = [], [], [], []
    for rec in dated(records(dataset), seed + zlib.crc32(name.encode()) % 1000):
        for chunk in chunker.split(rec):
            doc.append(rec.source_id)
            title.append(rec.title)
            text.append(chunk)
            age.append((NOW - rec.updated_at).total_seconds() / 86400)
    dense = encoder.encode_documents([embed_text(a, b) for a, b in zip(title, text,
                                                                       strict=True)])
    queries = {q: t for q, t in dataset.queries.items() if q in dataset.qrels}
    qvec = {q: encoder.encode_query(t) for q, t in queries.items()}
    if encoder.embedded:
        print(f"# {name}: embedded {encoder.embedded} texts not in the cache", file=sys.stderr)
    return LabSet(name, dataset.qrels, queries, qvec, doc, title, text, np.asarray(age),
                  dense)


def bm25_of(s: LabSet, title_weight: int, encoder: Bm25Encoder) -> Lexical:
    if title_weight not in s.bm25:
        texts = [(f"{a}\n" * title_weight if a else "") + b
                 for a, b in zip(s.title, s.text, strict=True)]
        s.bm25[title_weight] = lexical(texts, encoder)
    return s.bm25[title_weight]


def top(x: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(x))
    idx = np.argpartition(-x, k - 1)[:k]
    return idx[np.argsort(-x[idx], kind="stable")]


@dataclass
class Legs:
    """One query's legs: every chunk's cosine and BM25, the candidates (the union of
    each leg's top ``prefetch``) and what score() needs besides."""

    s: LabSet
    qid: str
    sparse: Any  # the query's SparseVec
    cos: np.ndarray
    bm: np.ndarray
    d_rank: dict[int, int]
    b_rank: dict[int, int]
    cand: list[int]
    words: list[str]
    weights: Weights

    def ranked(self, bm_values: dict[int, float], norm: float | None = None,
               cosines: dict[int, float] | None = None,
               weights: Weights | None = None) -> list[Any]:
        """score() over the candidates with these BM25 values (and cosines); ``norm``
        divides BM25 instead of the best candidate's when it is larger (a sentinel hit
        holds it: score() divides by the best hit's)."""
        s = self.s
        hits = []
        for c in self.cand:
            legs = {}
            if c in self.d_rank or cosines is not None:
                legs[DENSE] = (self.d_rank.get(c, 0),
                               float(self.cos[c] if cosines is None else cosines[c]))
            if bm_values.get(c, 0.0) > 0:
                legs[SPARSE] = (self.b_rank.get(c, 0), float(bm_values[c]))
            hits.append(ScoredChunk(id=str(c), score=0.0, payload={
                "source_id": s.doc[c], "kind": "document", "title": s.title[c],
                "text": s.text[c], "updated_at": NOW.isoformat()},
                dense=s.dense[c], legs=legs))
        if norm is not None:
            hits.append(ScoredChunk(id="-1", score=0.0, payload={
                "source_id": "", "kind": "document", "title": "", "text": "",
                "updated_at": NOW.isoformat()}, dense=None,
                legs={SPARSE: (0, max(norm, *bm_values.values()))}))
        ranked = score(hits, s.qvec[self.qid], weights=weights or self.weights,
                       terms=exact_terms(s.queries[self.qid]), now=NOW, half_lives=None,
                       words=self.words)
        return [c for c in ranked if c.hit.id != "-1"]


Variant = Callable[[Legs, Lexical, list[Any]], Any]


def legs_of(s: LabSet, qid: str, bm25: Lexical, enc: Bm25Encoder, weights: Weights,
            prefetch: int) -> Legs:
    text = s.queries[qid]
    cos = s.dense @ s.qvec[qid]
    sparse = enc.encode_query(text)
    bm = bm25.query(list(sparse.indices))
    d_top = top(cos, prefetch)
    b_top = top(bm, prefetch)
    b_top = b_top[bm[b_top] > 0]
    return Legs(s, qid, sparse, cos, bm, {int(c): r for r, c in enumerate(d_top)},
                {int(c): r for r, c in enumerate(b_top)},
                list(dict.fromkeys([*map(int, d_top), *map(int, b_top)])),
                content_words(text, lambda w: bool(enc.encode_query(w).indices)), weights)


def run(s: LabSet, *, bm25: Lexical, enc: Bm25Encoder, weights: Weights,
        prefetch: int = 100, rescore: Variant | None = None) -> list[float]:
    """nDCG@10 per query of the product's score() on legs computed here. ``rescore(legs,
    bm25, ranked)`` may return new BM25 values for the candidates (with a normaliser), or
    ``("dense", cosines)``; score() then ranks again with them."""
    out = []
    for qid in s.queries:
        legs = legs_of(s, qid, bm25, enc, weights, prefetch)
        first = {c: float(legs.bm[c]) for c in legs.b_rank}
        ranked = legs.ranked(first)
        new = rescore(legs, bm25, ranked) if rescore is not None else None
        if isinstance(new, tuple) and new[0] == "dense":
            ranked = legs.ranked(first, cosines=new[1],
                                 weights=replace(weights, feedback_docs=0))
        elif isinstance(new, tuple):
            ranked = legs.ranked(*new)
        elif new is not None:
            ranked = legs.ranked(new)
        docs = list(dict.fromkeys(str(c.hit.payload["source_id"]) for c in ranked))
        out.append(ndcg_at(docs, s.qrels[qid]))
    return out


# ---- variants ---------------------------------------------------------------------------

def rm3(fb_docs: int = 5, fb_terms: int = 10, lam: float = 0.5,
        lead: str = "fused") -> Variant:
    """A second BM25 query (RM3-like): the query's terms plus the ``fb_terms`` heaviest
    other terms of the leading ``fb_docs`` chunks (term value x IDF, summed; the leading
    chunks of the first fusion, or of the BM25 leg), weighted ``lam`` (the heaviest) against
    1 for the query's own; it re-scores the candidates."""
    def f(legs: Legs, bm25: Lexical, ranked: list[Any]) -> Any:
        rows = ([int(c.hit.id) for c in ranked[:fb_docs]] if lead == "fused"
                else [int(c) for c in top(legs.bm, fb_docs)])
        weight = np.asarray(bm25.matrix[rows].sum(axis=0)).ravel() * bm25.idf
        own = [bm25.column[i] for i in legs.sparse.indices if i in bm25.column]
        weight[own] = 0
        extra = top(weight, fb_terms)
        extra = extra[weight[extra] > 0]
        if not len(extra):
            return None
        q = np.zeros(bm25.matrix.shape[1])
        q[own] = 1.0
        q[extra] += lam * weight[extra] / weight[extra].max()
        values = np.asarray(bm25.matrix @ (q * bm25.idf)).ravel()
        return {c: float(values[c]) for c in legs.cand if values[c] > 0}
    return f


def over_idf_sum(legs: Legs, bm25: Lexical, ranked: list[Any]) -> Any:
    """BM25 divided by the larger of the best candidate's and the sum of the query terms'
    IDF (every term once at average length): a best lexical hit that holds only part of
    the query counts for less."""
    cols = [bm25.column[i] for i in legs.sparse.indices if i in bm25.column]
    if not cols:
        return None
    values = {c: float(legs.bm[c]) for c in legs.cand if legs.bm[c] > 0}
    return values, float(bm25.idf[cols].sum())


def best_hit_coverage(legs: Legs, bm25: Lexical, ranked: list[Any]) -> Any:
    """BM25 relative to the best candidate's, times the IDF-weighted share of the query's
    terms that best lexical hit holds."""
    cols = [bm25.column[i] for i in legs.sparse.indices if i in bm25.column]
    if not cols:
        return None
    best = max(legs.cand, key=lambda c: legs.bm[c])
    row = bm25.matrix[best].toarray().ravel()
    idf = bm25.idf[cols]
    share = float((idf * (row[cols] > 0)).sum() / idf.sum())
    values = {c: float(legs.bm[c]) for c in legs.cand if legs.bm[c] > 0}
    return values, float(legs.bm[best]) / max(share, 1e-6)


def gated(legs: Legs, bm25: Lexical, ranked: list[Any]) -> Any:
    """Lexical evidence scaled by the candidate's dense closeness (min-max of the cosine
    over the candidates): a lexical match counts in full only near the dense top."""
    cos = legs.cos[legs.cand]
    lo, hi = float(cos.min()), float(cos.max())
    return {c: float(legs.bm[c]) * max(0.0, (legs.cos[c] - lo) / (hi - lo or 1.0))
            for c in legs.cand if legs.bm[c] > 0}


def both_queries(legs: Legs, bm25: Lexical, ranked: list[Any]) -> Any:
    """The dense evidence as the mean of the cosine to the query as it is and to the
    query expanded by feedback (instead of the expanded one alone)."""
    out = {}
    for c in ranked:
        n = int(c.hit.id)
        wide = c.feedback_cosine if c.feedback_cosine is not None else legs.cos[n]
        out[n] = (float(legs.cos[n]) + wide) / 2
    return "dense", out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lexical_lab", description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default="msmarco-subset,dbpedia-subset,"
                                          "business-reports-subset,scifact")
    parser.add_argument("--schemes", default="", help="comma-separated label substrings")
    args = parser.parse_args()
    settings = Settings()
    encoder = CachedEncoder(SentenceTransformerEncoder(settings.embedding_model),
                            ROOT / "bench" / ".cache")
    enc = Bm25Encoder()
    names = [n for n in args.sets.split(",") if (args.data / n).is_dir()]
    sets = {n: load(n, args.data, settings, encoder) for n in names}
    base = Weights(dense_weight=settings.dense_weight,
                   freshness_weight=settings.freshness_weight,
                   floor=settings.freshness_floor, calibration=settings.relevance_calibration,
                   feedback_docs=settings.feedback_docs,
                   feedback_weight=settings.feedback_weight)
    schemes: dict[str, dict[str, Any]] = {
        "dense": {"weights": replace(base, dense_weight=1.0, feedback_docs=0)},
        "bm25": {"weights": replace(base, dense_weight=0.0, feedback_docs=0)},
        "product (score fusion + feedback)": {},
        "title x2 in BM25": {"title": 2},
        "title x3 in BM25": {"title": 3},
        "rm3 fused lead 5d 10t 0.5": {"rescore": rm3()},
        "rm3 fused lead 5d 10t 0.3": {"rescore": rm3(lam=0.3)},
        "rm3 fused lead 10d 20t 0.5": {"rescore": rm3(10, 20)},
        "rm3 bm25 lead 5d 10t 0.5": {"rescore": rm3(lead="bm25")},
        "rm3 bm25 lead 5d 10t 1.0": {"rescore": rm3(lam=1.0, lead="bm25")},
        "rm3 bm25 lead 3d 10t 0.5": {"rescore": rm3(3, lead="bm25")},
        "bm25 / max(best, sum idf)": {"rescore": over_idf_sum},
        "bm25 x best hit's idf coverage": {"rescore": best_hit_coverage},
        "bm25 gated by dense closeness": {"rescore": gated},
        "dense mean(q, expanded q)": {"rescore": both_queries},
        "title x2 + rm3 bm25 lead": {"title": 2, "rescore": rm3(lead="bm25")},
    }
    if args.schemes:
        wanted = args.schemes.split(",")
        schemes = {k: v for k, v in schemes.items()
                   if k in ("dense", "bm25") or k.startswith("product")
                   or any(p in k for p in wanted)}
    rng = np.random.default_rng(0)
    print(f"{'scheme (nDCG@10; delta vs product, 95% paired bootstrap)':40}"
          + "".join(f"{n[:30]:>32}" for n in names), flush=True)
    results: dict[str, dict[str, np.ndarray]] = {}
    for label, kw in schemes.items():
        cells = []
        for n in names:
            s = sets[n]
            x = np.asarray(run(s, bm25=bm25_of(s, kw.get("title", 1), enc), enc=enc,
                               weights=kw.get("weights", base), rescore=kw.get("rescore")))
            results.setdefault(label, {})[n] = x
            ref = results.get("product (score fusion + feedback)", {}).get(n)
            cell = f"{x.mean():.3f}"
            if ref is not None and label[:7] != "product":
                d = x - ref
                boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
                lo, hi = np.percentile(boot, [2.5, 97.5])
                cell += f" {d.mean():+.3f} [{lo:+.3f},{hi:+.3f}]"
            cells.append(cell)
        print(f"{label:40}" + "".join(f"{c:>32}" for c in cells), flush=True)
        if label == "bm25":
            best = [np.maximum(results["dense"][n], results["bm25"][n]).mean()
                    for n in names]
            print(f"{'better leg per query (oracle)':40}"
                  + "".join(f"{b:32.3f}" for b in best), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
