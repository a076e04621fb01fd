"""Relevance from each retrieval leg's evidence; freshness as a bounded adjustment.

The engine returns each leg's hits with raw scores (dense cosine, BM25), both under the
caller's access filter. Here they become, per candidate:

- ``fused``: the ranking score, ``w * cosine + (1 - w) * bm25 / best_bm25``: the dense
  cosine as it is (comparable across queries) and BM25 relative to the best lexical match
  of the query. Score fusion keeps how much better a hit is, which rank fusion (RRF)
  throws away: with equal-weight RRF a weak leg pulls the fused list down.
- with ``feedback_docs``, the dense part of ``fused`` is the cosine to the query expanded
  with the vectors of the leading candidates of that first fusion (pseudo-relevance
  feedback, :func:`_feedback_cosines`), computed over the candidates only.
- ``relevance``: calibrated, comparable across queries and thresholdable: a logistic of the
  cosine and of the share of the query's content words the chunk holds (:func:`coverage`).
- ``freshness``: ``floor + (1 - floor) * 0.5 ** (age / half_life)`` from the item's own
  clock; it *adds* at most ``freshness_weight`` to the score, so it only reorders items
  whose fused scores are that close, and never lifts a weak match over a strong one.
- an exact match (identifier, quoted phrase, title) adds :data:`EXACT_BONUS`: that record
  comes first whatever its age.

docs/ranking.md has the measured comparison of fusion and freshness schemes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from contextd.core.store import DENSE, SPARSE, ScoredChunk
from contextd.retrieval.exact import ExactTerms
from contextd.retrieval.ranking import Candidate, freshness_factor

EXACT_BONUS = 1.0
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Weights:
    """The knobs of :func:`score`, from settings (measured defaults in docs/ranking.md)."""

    dense_weight: float
    freshness_weight: float
    floor: float
    calibration: tuple[float, float, float]  # cosine, lexical coverage, intercept
    feedback_docs: int = 0  # leading candidates whose vectors expand the query (0: none)
    feedback_weight: float = 1.0  # their mean vector's weight against the query's


def calibrate(cosine: float, coverage: float, coef: tuple[float, float, float]) -> float:
    """P(relevant) as a logistic of the dense cosine and the lexical coverage."""
    a, b, c = coef
    return 1.0 / (1.0 + math.exp(-(a * cosine + b * coverage + c)))


def parse_ts(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def content_words(query: str, is_term: Callable[[str], bool]) -> list[str]:
    """The query's words that are BM25 terms (not stopwords), lowercased, as prefixes
    that survive the usual English suffixes (``policies`` -> ``polici``)."""
    words = dict.fromkeys(w.lower() for w in re.findall(r"[\w][\w-]*", query))
    return [w[:max(4, len(w) - 2)] for w in words if is_term(w)]


def coverage(words: Sequence[str], title: str, text: str) -> float:
    """Share of ``words`` the chunk holds: the lexical evidence of relevance that is
    comparable across queries (a BM25 score is not: it grows with the query's length and
    its terms' rarity). Substring tests: microseconds for a bundle's candidates, where
    re-tokenizing each chunk would cost about a millisecond."""
    if not words:
        return 0.0
    body = f"{title}\n{text}".lower()
    return sum(1 for w in words if w in body) / len(words)


def score(hits: Sequence[ScoredChunk], query_vector: np.ndarray | None, *,
          weights: Weights, terms: ExactTerms, now: datetime,
          half_lives: dict[str, float] | None,
          words: Sequence[str] = ()) -> list[Candidate]:
    """Candidates best first. ``half_lives`` None: freshness off (factor 1, no bonus).
    ``words``: the query's content words (:func:`content_words`), for relevance."""
    if not hits:
        return []
    cosines = _cosines(hits, query_vector)
    bm25s = [h.legs[SPARSE][1] if SPARSE in h.legs else 0.0 for h in hits]
    best_bm25 = max(bm25s)
    has_dense = query_vector is not None
    w = weights.dense_weight if has_dense and best_bm25 > 0 else (1.0 if has_dense else 0.0)
    lexical = [b / best_bm25 if best_bm25 > 0 else 0.0 for b in bm25s]
    fused = [w * c + (1.0 - w) * lex for c, lex in zip(cosines, lexical, strict=True)]
    expanded: list[float | None] = [None] * len(hits)
    if weights.feedback_docs > 0 and query_vector is not None and 0 < w < 1:
        expanded = _feedback_cosines(hits, query_vector, fused, weights)
        fused = [f if e is None else w * e + (1.0 - w) * lex
                 for f, e, lex in zip(fused, expanded, lexical, strict=True)]
    out: list[Candidate] = []
    for hit, cosine, bm25, fuse, wide in zip(hits, cosines, bm25s, fused, expanded,
                                             strict=True):
        payload = hit.payload
        title = str(payload.get("title") or "")
        text = str(payload.get("text") or "")
        cover = coverage(words, title, text)
        relevance = calibrate(cosine, cover, weights.calibration)
        updated_at = parse_ts(payload.get("updated_at"))
        factor = 1.0
        if half_lives is not None:
            half_life = half_lives.get(str(payload.get("kind")), 180 * _DAY)
            factor = freshness_factor((now - updated_at).total_seconds(), half_life,
                                      weights.floor)
        exact = terms.matched(title, text) if terms else []
        total = fuse + (weights.freshness_weight * factor if half_lives is not None else 0.0)
        if exact:
            total += EXACT_BONUS + 0.01 * len(exact)
            relevance = max(relevance, 0.99)
        out.append(Candidate(
            hit=hit, updated_at=updated_at, relevance=relevance, freshness=factor,
            score=total, cosine=cosine, bm25=bm25, fused=fuse, exact=exact,
            coverage=cover, feedback_cosine=wide,
            dense_rank=hit.legs[DENSE][0] + 1 if DENSE in hit.legs else None,
            bm25_rank=hit.legs[SPARSE][0] + 1 if SPARSE in hit.legs else None))
    out.sort(key=lambda c: c.score, reverse=True)
    return out


def _feedback_cosines(hits: Sequence[ScoredChunk], query_vector: np.ndarray,
                      fused: Sequence[float], weights: Weights) -> list[float | None]:
    """Each hit's cosine to the query expanded with the leading candidates (pseudo-
    relevance feedback, Rocchio on the dense vectors): ``q + feedback_weight * mean(top
    feedback_docs vectors)``, unit length. The leading candidates are chosen by the fused
    score of both legs, so the expanded query carries the lexical evidence into the dense
    leg. Only the candidates are re-scored (no second search), and only with vectors the
    caller may see. None for a hit without a vector."""
    rows = [n for n, h in enumerate(hits) if h.dense is not None]
    if not rows:
        return [None] * len(hits)
    matrix = np.asarray([hits[n].dense for n in rows], dtype=np.float32)
    lead = sorted(range(len(rows)), key=lambda i: fused[rows[i]], reverse=True)
    centroid = matrix[lead[:weights.feedback_docs]].mean(axis=0)
    expanded = np.asarray(query_vector, dtype=np.float32) + weights.feedback_weight * centroid
    norm = float(np.linalg.norm(expanded))
    if norm == 0:
        return [None] * len(hits)
    cos = matrix @ (expanded / norm)
    out: list[float | None] = [None] * len(hits)
    for i, n in enumerate(rows):
        out[n] = float(cos[i])
    return out


def _cosines(hits: Sequence[ScoredChunk], query_vector: np.ndarray | None) -> list[float]:
    """The dense cosine of every hit: the leg's score, else from the hit's vector (a hit
    only BM25 found still has its dense evidence)."""
    out = []
    for hit in hits:
        if DENSE in hit.legs:
            out.append(hit.legs[DENSE][1])
        elif query_vector is not None and hit.dense is not None:
            out.append(float(np.dot(query_vector, np.asarray(hit.dense, dtype=np.float32))))
        else:
            out.append(0.0)
    return out
