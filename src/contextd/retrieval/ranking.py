"""Pure post-engine steps: score parts, supersession, near-duplicate removal, packing.

The engine has already applied the access filter, fused dense and BM25 ranks and weighted
freshness; nothing here can add an item the engine did not return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np

from contextd.core.store import ScoredChunk
from contextd.core.tokens import count_tokens, truncate_tokens

_MIN_TRUNCATED_TOKENS = 48


@dataclass(slots=True)
class Candidate:
    """An engine hit with its score split into relevance and freshness."""

    hit: ScoredChunk
    updated_at: datetime
    relevance: float
    freshness: float
    score: float
    superseded: bool = False
    # Evidence behind the score (see retrieval.scoring), reported by ``explain``.
    cosine: float = 0.0
    bm25: float = 0.0
    fused: float = 0.0
    coverage: float = 0.0
    feedback_cosine: float | None = None  # cosine to the feedback-expanded query
    dense_rank: int | None = None
    bm25_rank: int | None = None
    exact: list[str] = field(default_factory=list)
    superseded_by: str = ""
    notes: list[str] = field(default_factory=list)


def freshness_factor(age_seconds: float, half_life_seconds: float, floor: float) -> float:
    """The engine's factor: ``floor + (1 - floor) * 0.5 ** (|age| / half_life)``."""
    return floor + (1.0 - floor) * math.pow(0.5, abs(age_seconds) / half_life_seconds)


def supersede(candidates: list[Candidate]) -> list[Candidate]:
    """An older version of an entity never outranks a newer one.

    Versions share ``entity_key``; each older version's score is capped just below the
    best score of every newer version present, then the list is re-sorted. Older versions
    stay (marked ``superseded``) so history is visible, but always after the current one.
    """
    by_entity: dict[str, list[Candidate]] = {}
    for cand in candidates:
        key = cand.hit.payload.get("entity_key") or ""
        if key:
            by_entity.setdefault(key, []).append(cand)
    for group in by_entity.values():
        if len(group) < 2:  # most entities: one chunk in the candidates, nothing to cap
            continue
        versions = sorted({c.updated_at for c in group}, reverse=True)
        if len(versions) < 2:
            continue
        cap = math.inf
        current = max((c for c in group if c.updated_at == versions[0]), key=lambda c: c.score)
        for version in versions:
            members = [c for c in group if c.updated_at == version]
            if cap is not math.inf:
                for c in members:
                    c.superseded = True
                    c.superseded_by = str(current.hit.payload.get("source_id") or current.hit.id)
                    if c.score > cap:
                        c.notes.append(f"supersession: ranked below the newer version "
                                       f"{c.superseded_by}")
                    c.score = min(c.score, cap)
            best = max(c.score for c in members)
            cap = min(cap, best - 1e-6 * abs(best) - 1e-9)
    return sorted(candidates, key=lambda c: c.score, reverse=True)


def drop_near_duplicates(candidates: Sequence[Candidate], threshold: float,
                         dropped: list[tuple[Candidate, str]] | None = None,
                         ) -> list[Candidate]:
    """Keep the best of each group of chunks whose dense cosine is >= ``threshold``.

    A chunk close to a kept one is dropped unless it matches the query better than each of
    its kept twins (``fused``, before supersession and freshness): an older version the
    query targets stays reachable. Dropped chunks and why are appended to ``dropped``.

    All pairwise cosines come from one matrix product (vectors are unit length); only a
    candidate close to some better-ranked one needs the sequential check against those
    kept, so the usual bundle with few near-duplicates is one pass without numpy calls.
    """
    rows = [n for n, c in enumerate(candidates) if c.hit.dense is not None]
    row_of = dict(zip(rows, range(len(rows)), strict=True))
    close = np.zeros((0, 0), dtype=bool)
    suspect: set[int] = set()
    if rows:
        matrix = np.asarray([candidates[n].hit.dense for n in rows], dtype=np.float32)
        close = np.triu(matrix @ matrix.T >= threshold, k=1)  # close[a, b]: a ranks above b
        suspect = set(np.flatnonzero(close.any(axis=0)).tolist())
    kept: list[Candidate] = []
    kept_rows: list[int] = []
    seen_hashes: set[str] = set()
    kept_by_row: dict[int, Candidate] = {}
    for index, cand in enumerate(candidates):
        digest = cand.hit.payload.get("content_hash")
        if digest and digest in seen_hashes:
            if dropped is not None:
                dropped.append((cand, "duplicate: same text as a better-ranked item"))
            continue
        r = row_of.get(index)
        if r is not None and r in suspect and kept_rows and close[kept_rows, r].any():
            twins = [kept_by_row[k] for k, near in zip(kept_rows, close[kept_rows, r],
                                                       strict=True) if near]
            if all(cand.fused > t.fused for t in twins):
                cand.notes.append("near-duplicate kept: matches the query better than "
                                  + ", ".join(_ref(t) for t in twins))
            else:
                if dropped is not None:
                    dropped.append((cand, f"near-duplicate of {_ref(twins[0])} "
                                          f"(cosine >= {threshold})"))
                continue
        kept.append(cand)
        if r is not None:
            kept_by_row[r] = cand
        if r is not None:
            kept_rows.append(r)
        if digest:
            seen_hashes.add(digest)
    return kept


def _ref(cand: Candidate) -> str:
    return str(cand.hit.payload.get("source_id") or cand.hit.id)


@lru_cache(maxsize=4096)
def _title_line_tokens(title: str) -> int:
    return count_tokens(f"{title}\n")


def item_tokens(title: str, text: str, text_tokens: object = None,
                title_tokens: object = None) -> int:
    """cl100k tokens of an item as served (title line + text), exactly.

    With the counts stored at ingest this is two lookups: cl100k never merges across a
    newline followed by a non-space character, so the count splits exactly there.
    """
    if isinstance(text_tokens, int) and text[:1] and not text[:1].isspace():
        return title_line_tokens(title, title_tokens) + text_tokens
    return count_tokens(f"{title}\n{text}")


def title_line_tokens(title: str, stored: object = None) -> int:
    """Tokens of ``title`` and its newline: stored at ingest (``title_tokens``), else
    counted (cached: chunks of one document share the title)."""
    return stored if isinstance(stored, int) else _title_line_tokens(title)


@dataclass(slots=True)
class Packed:
    """A candidate as packed, possibly with its text cut to fit the budget."""

    candidate: Candidate
    text: str
    tokens: int


def pack(candidates: Sequence[Candidate], *, budget: int, top_k: int,
         dropped: list[tuple[Candidate, str]] | None = None) -> tuple[list[Packed], bool]:
    """Greedy packing in rank order into ``budget`` cl100k tokens, at most ``top_k`` items.

    An item that does not fit is cut to the remaining budget when enough room is left to
    be useful, else skipped for a smaller one. Returns the items and whether anything was
    cut or left out for lack of budget; with ``dropped``, what was left out and why.
    """
    packed: list[Packed] = []
    used = 0
    truncated = False
    for index, cand in enumerate(candidates):
        if len(packed) >= top_k:
            if dropped is not None:
                dropped.extend((c, f"beyond top_k {top_k}") for c in candidates[index:])
            break
        payload = cand.hit.payload
        title = str(payload.get("title") or "")
        text = str(payload.get("text") or "")
        title_tokens = title_line_tokens(title, payload.get("title_tokens"))
        tokens = item_tokens(title, text, payload.get("text_tokens"), title_tokens)
        if used + tokens <= budget:
            packed.append(Packed(cand, text, tokens))
            used += tokens
            continue
        truncated = True
        room = budget - used - title_tokens
        if room >= _MIN_TRUNCATED_TOKENS:
            cut = truncate_tokens(text, room)
            cut_tokens = count_tokens(f"{title}\n{cut}")
            if used + cut_tokens <= budget:
                cand.notes.append(f"budget: text cut from {tokens} to {cut_tokens} tokens")
                packed.append(Packed(cand, cut, cut_tokens))
                used += cut_tokens
                continue
        if dropped is not None:
            dropped.append((cand, f"token budget: {tokens} tokens, {budget - used} left"))
    return packed, truncated
