"""Score fusion on hand-made engine hits: relevance first, freshness bounded, exact
matches first, calibrated relevance; de-duplication keeps the twin a query targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from contextd.core.store import DENSE, SPARSE, ScoredChunk
from contextd.retrieval.exact import exact_terms
from contextd.retrieval.ranking import drop_near_duplicates, supersede
from contextd.retrieval.scoring import Weights, calibrate, score

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WEIGHTS = Weights(dense_weight=0.7, freshness_weight=0.05, floor=0.75,
                  calibration=(12.0, 2.0, -7.0))
HALF_LIVES = {"document": 180 * 86400.0}


def hit(cid: str, *, cosine: float, bm25: float | None = None, age_days: float = 0,
        text: str = "t", entity: str = "", dense: list[float] | None = None) -> ScoredChunk:
    legs = {DENSE: (0, cosine)}
    if bm25 is not None:
        legs[SPARSE] = (0, bm25)
    payload = {"source_id": cid, "kind": "document", "title": cid, "text": text,
               "entity_key": entity,
               "updated_at": (NOW - timedelta(days=age_days)).isoformat()}
    return ScoredChunk(id=cid, score=cosine, payload=payload, legs=legs,
                       dense=None if dense is None else np.asarray(dense, dtype=np.float32))


def ranked(hits: list[ScoredChunk], query: str = "q", fresh: bool = True) -> list[str]:
    out = score(hits, None, weights=WEIGHTS, terms=exact_terms(query), now=NOW,
                half_lives=HALF_LIVES if fresh else None)
    return [c.hit.id for c in out]


def test_a_fresh_weak_match_never_beats_a_strong_old_one() -> None:
    hits = [hit("strong-old", cosine=0.80, bm25=9.0, age_days=2000),
            hit("weak-new", cosine=0.55, bm25=4.0, age_days=0)]
    assert ranked(hits) == ["strong-old", "weak-new"]


def test_freshness_decides_between_items_of_comparable_relevance() -> None:
    hits = [hit("old", cosine=0.700, bm25=8.0, age_days=1500),
            hit("new", cosine=0.695, bm25=8.0, age_days=5)]
    assert ranked(hits, fresh=False) == ["old", "new"]
    assert ranked(hits, fresh=True) == ["new", "old"]


def test_the_record_bearing_an_identifier_comes_first_whatever_its_age() -> None:
    hits = [hit("other", cosine=0.75, bm25=9.0, age_days=1, text="Invoice INV-2024-0043"),
            hit("bearer", cosine=0.60, bm25=7.0, age_days=1400, text="Invoice INV-2024-0042")]
    out = score(hits, None, weights=WEIGHTS, terms=exact_terms("status of INV-2024-0042"),
                now=NOW, half_lives=HALF_LIVES)
    assert [c.hit.id for c in out] == ["bearer", "other"]
    assert out[0].exact == ["INV-2024-0042"] and out[0].relevance >= 0.99


def test_relevance_is_calibrated_not_normalised_to_the_top_hit() -> None:
    weak = score([hit("only", cosine=0.2)], None, weights=WEIGHTS, terms=exact_terms("q"),
                 now=NOW, half_lives=None)
    assert weak[0].relevance < 0.1  # the best of an unrelated set is still unrelated
    assert calibrate(0.8, 1.0, WEIGHTS.calibration) > 0.9
    assert calibrate(0.5, 1.0, WEIGHTS.calibration) > calibrate(0.5, 0.0, WEIGHTS.calibration)


def test_the_older_twin_a_query_targets_is_kept_and_points_to_the_current_one() -> None:
    old = hit("policy-2024", cosine=0.9, bm25=10.0, age_days=900, entity="policy:travel",
              dense=[1.0, 0.0])
    new = hit("policy-2026", cosine=0.8, bm25=6.0, age_days=30, entity="policy:travel",
              dense=[0.999, 0.0447])
    cands = supersede(score([old, new], None, weights=WEIGHTS, terms=exact_terms("q"),
                            now=NOW, half_lives=HALF_LIVES))
    assert [c.hit.id for c in cands] == ["policy-2026", "policy-2024"]
    dropped: list = []
    kept = drop_near_duplicates(cands, 0.97, dropped)
    assert [c.hit.id for c in kept] == ["policy-2026", "policy-2024"] and not dropped
    assert kept[1].superseded and kept[1].superseded_by == "policy-2026"
    assert any("near-duplicate kept" in n for n in kept[1].notes)


def test_a_twin_that_matches_no_better_is_dropped_with_its_reason() -> None:
    a = hit("a", cosine=0.9, dense=[1.0, 0.0])
    b = hit("b", cosine=0.85, dense=[0.999, 0.0447])
    cands = score([a, b], None, weights=WEIGHTS, terms=exact_terms("q"), now=NOW,
                  half_lives=None)
    dropped: list = []
    assert [c.hit.id for c in drop_near_duplicates(cands, 0.97, dropped)] == ["a"]
    assert dropped[0][0].hit.id == "b" and "near-duplicate of a" in dropped[0][1]


def test_accuracy_counts_an_item_served_as_an_older_version_as_superseded() -> None:
    from contextd.quality.metrics import item_was_current
    from contextd.quality.sources import DocumentState

    state = DocumentState(version=1, deleted=False, changed_at=NOW - timedelta(days=400))
    item = {"doc_version": 1, "superseded": False}
    assert item_was_current(item, NOW, state) == "current"
    assert item_was_current({**item, "superseded": True}, NOW, state) == "superseded"


FEEDBACK = Weights(dense_weight=0.7, freshness_weight=0.05, floor=0.75,
                   calibration=(12.0, 2.0, -7.0), feedback_docs=1, feedback_weight=1.0)
QUERY = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)


def _topic_hits(with_bm25: bool = True) -> list[ScoredChunk]:
    """A lead both legs agree on, a chunk on the lead's topic, and one as close to the
    query's vector but on another topic."""
    return [hit("lead", cosine=0.80, bm25=10.0 if with_bm25 else None, dense=[0.8, 0.6, 0.0]),
            hit("same-topic", cosine=0.60, dense=[0.6, 0.8, 0.0]),
            hit("other-topic", cosine=0.62, dense=[0.62, 0.0, 0.7846])]


def test_feedback_ranks_the_lead_topic_above_an_equally_close_other_topic() -> None:
    without = score(_topic_hits(), QUERY, weights=WEIGHTS, terms=exact_terms("q"), now=NOW,
                    half_lives=None)
    assert [c.hit.id for c in without] == ["lead", "other-topic", "same-topic"]
    out = score(_topic_hits(), QUERY, weights=FEEDBACK, terms=exact_terms("q"), now=NOW,
                half_lives=None)
    assert [c.hit.id for c in out] == ["lead", "same-topic", "other-topic"]
    same = out[1]
    # The expanded query's cosine drives fused; relevance stays on the query's own cosine.
    assert same.feedback_cosine is not None and same.feedback_cosine > same.cosine
    assert same.cosine == 0.60
    assert same.relevance == calibrate(0.60, 0.0, FEEDBACK.calibration)


def test_feedback_needs_both_legs() -> None:
    """Dense alone (no BM25 evidence) is the dense leg as it is: feedback fuses legs."""
    out = score(_topic_hits(with_bm25=False), QUERY, weights=FEEDBACK,
                terms=exact_terms("q"), now=NOW, half_lives=None)
    assert [c.hit.id for c in out] == ["lead", "other-topic", "same-topic"]
    assert all(c.feedback_cosine is None for c in out)
