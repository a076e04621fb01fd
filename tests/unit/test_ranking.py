"""Supersession, near-duplicate removal and packing, on hand-made candidates."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.core.store import ScoredChunk
from contextd.core.tokens import count_tokens
from contextd.retrieval.ranking import (
    Candidate,
    drop_near_duplicates,
    freshness_factor,
    item_tokens,
    pack,
    supersede,
)


def cand(cid: str, score: float, *, entity: str = "", year: int = 2026, text: str = "t",
         dense: list[float] | None = None) -> Candidate:
    payload = {"entity_key": entity, "text": text, "title": cid, "content_hash": cid}
    hit = ScoredChunk(id=cid, score=score, payload=payload, dense=dense)
    return Candidate(hit=hit, updated_at=datetime(year, 1, 1, tzinfo=UTC), relevance=score,
                     freshness=1.0, score=score)


def test_older_version_never_outranks_newer() -> None:
    ranked = supersede([cand("old", 0.9, entity="p", year=2024), cand("x", 0.5),
                        cand("new", 0.2, entity="p", year=2026),
                        cand("mid", 0.8, entity="p", year=2025)])
    order = [c.hit.id for c in ranked]
    assert order.index("new") < order.index("mid") < order.index("old")
    assert [c.superseded for c in ranked if c.hit.id in ("old", "mid")] == [True, True]
    assert not next(c for c in ranked if c.hit.id == "new").superseded
    scores = [c.score for c in ranked]
    assert scores == sorted(scores, reverse=True)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(2020, 2026),
                          st.floats(0.01, 1.0)), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_supersession_property(rows: list[tuple[str, int, float]]) -> None:
    cands = [cand(f"{i}", s, entity=e, year=y) for i, (e, y, s) in enumerate(rows)]
    ranked = supersede(cands)
    best_rank: dict[tuple[str, int], int] = {}
    for pos, c in enumerate(ranked):
        best_rank.setdefault((c.hit.payload["entity_key"], c.updated_at.year), pos)
    for (entity, year), pos in best_rank.items():
        for (other_entity, other_year), other_pos in best_rank.items():
            if entity == other_entity and other_year > year:
                assert other_pos < pos


def test_near_duplicates_keep_the_best() -> None:
    a = cand("a", 0.9, dense=[1.0, 0.0])
    b = cand("b", 0.8, dense=[0.999, 0.0447])
    c = cand("c", 0.7, dense=[0.0, 1.0])
    kept = drop_near_duplicates([a, b, c], threshold=0.97)
    assert [k.hit.id for k in kept] == ["a", "c"]


def _greedy_reference(cands: list[Candidate], threshold: float) -> list[str]:
    """The definition, pair by pair: drop a candidate close to any better one kept
    (cosines in float32, as the implementation computes them)."""
    kept: list[Candidate] = []
    for c in cands:
        if any(k.hit.dense is not None and c.hit.dense is not None
               and float(np.dot(np.float32(k.hit.dense), np.float32(c.hit.dense))) >= threshold
               for k in kept):
            continue
        kept.append(c)
    return [k.hit.id for k in kept]


def test_near_duplicate_chain_drops_only_what_is_close_to_a_kept_one() -> None:
    # b is close to a, c is close to b but not to a: b goes, c stays (b was not kept).
    a = cand("a", 0.9, dense=[1.0, 0.0])
    b = cand("b", 0.8, dense=[0.985, 0.1726])
    c = cand("c", 0.7, dense=[0.9397, 0.342])
    kept = drop_near_duplicates([a, b, c], threshold=0.98)
    assert [k.hit.id for k in kept] == _greedy_reference([a, b, c], 0.98) == ["a", "c"]


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(-0.3, 0.3), st.booleans()),
                min_size=0, max_size=40))
@settings(max_examples=200, deadline=None)
def test_near_duplicates_match_the_pairwise_definition(
        spec: list[tuple[int, float, bool]]) -> None:
    # Points on a few clusters of the unit circle; some without a vector.
    cands = []
    for i, (cluster, jitter, has_vector) in enumerate(spec):
        angle = cluster + jitter
        dense = [math.cos(angle), math.sin(angle)] if has_vector else None
        cands.append(cand(f"c{i}", 1.0 - i / 100, dense=dense))
    kept = drop_near_duplicates(cands, threshold=0.97)
    assert [k.hit.id for k in kept] == _greedy_reference(cands, 0.97)


@given(st.lists(st.text(min_size=0, max_size=400), min_size=0, max_size=25),
       st.integers(1, 2000), st.integers(1, 30))
@settings(max_examples=200, deadline=None)
def test_pack_never_exceeds_budget(texts: list[str], budget: int, top_k: int) -> None:
    cands = [cand(f"c{i}", 1.0 - i / 100, text=t) for i, t in enumerate(texts)]
    packed, _ = pack(cands, budget=budget, top_k=top_k)
    total = sum(p.tokens for p in packed)
    assert total <= budget
    assert len(packed) <= top_k
    for p in packed:
        assert p.tokens == count_tokens(f"{p.candidate.hit.payload['title']}\n{p.text}")


@given(st.lists(st.tuples(st.text(max_size=60), st.text(min_size=1, max_size=300)),
                min_size=1, max_size=15), st.integers(1, 800))
@settings(max_examples=150, deadline=None)
def test_counts_stored_at_ingest_give_the_exact_served_count(
        docs: list[tuple[str, str]], budget: int) -> None:
    # The ingest path stores the title line's and the text's counts in the payload.
    cands = []
    for i, (title, text) in enumerate(docs):
        c = cand(f"c{i}", 1.0 - i / 100, text=text)
        c.hit.payload.update(title=title, title_tokens=count_tokens(f"{title}\n"),
                             text_tokens=count_tokens(text))
        cands.append(c)
    packed, _ = pack(cands, budget=budget, top_k=20)
    assert sum(p.tokens for p in packed) <= budget
    for p in packed:
        assert p.tokens == count_tokens(f"{p.candidate.hit.payload['title']}\n{p.text}")


def test_pack_truncates_a_large_first_item_rather_than_returning_nothing() -> None:
    big = cand("big", 1.0, text="word " * 2000)
    packed, truncated = pack([big], budget=100, top_k=5)
    assert truncated and packed and packed[0].tokens <= 100


def test_freshness_factor_matches_half_life_and_floor() -> None:
    assert freshness_factor(0, 10, 0.75) == 1.0
    assert abs(freshness_factor(10, 10, 0.75) - 0.875) < 1e-12
    assert freshness_factor(10**9, 10, 0.75) >= 0.75


@settings(max_examples=2000, deadline=None)
@given(title=st.text(max_size=40), text=st.text(min_size=1, max_size=200))
def test_item_tokens_split_at_the_title_newline_is_exact(title: str, text: str) -> None:
    """Packing adds a cached title count to the count stored at ingest; it must equal the
    count of the item as served, or budgets would be off."""
    assert item_tokens(title, text, count_tokens(text)) == count_tokens(f"{title}\n{text}")
