"""A small quality history whose every metric is worked out by hand in EXPECTED.

Window: the 24 hours before END. Documents, bundles (items with versions and dates),
feedback, request outcomes, connector checkpoints and eval runs are written straight to
the tables the service writes them to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from contextd.state.db import session_scope
from contextd.state.tables import (
    BundleServed,
    ConnectorCursor,
    ConnectorRow,
    ContextRequestRow,
    DocumentRow,
    EvalRunRow,
    FeedbackRow,
    SyncRunRow,
)

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=24)
H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def _doc(source: str, source_id: str, kind: str, version: int, ingested_at: datetime,
         deleted: bool = False) -> DocumentRow:
    return DocumentRow(source=source, source_id=source_id, kind=kind, doc_hash="h",
                       version=version, updated_at=ingested_at, ingested_at=ingested_at,
                       deleted=deleted, acl=["public"])


def _item(source: str, source_id: str, kind: str, version: int,
          updated_at: datetime) -> dict[str, Any]:
    return {"id": f"{source_id}-chunk", "source": source, "source_id": source_id, "kind": kind,
            "doc_version": version, "updated_at": updated_at.isoformat(), "score": 0.5,
            "tokens": 10}


def _bundle(bundle_id: str, at: datetime, items: list[dict[str, Any]], kinds: list[str],
            latency_ms: float, tokens: int) -> BundleServed:
    return BundleServed(bundle_id=bundle_id, created_at=at, key_id="k1", agent="agent-a",
                        user_id="alice", query_hash="0" * 64, kinds_requested=kinds,
                        items=items, token_budget=500, token_count=tokens, candidates=9,
                        latency_ms=latency_ms, stages_ms={"embed": latency_ms / 2})


def seed(engine: Engine, end: datetime = END) -> None:
    """Write the history, dated relative to ``end`` (EXPECTED holds for any ``end``)."""
    start = end - timedelta(hours=24)
    b1 = end - 2 * H
    b2 = end - 6 * H
    b3 = end - 18 * H
    b4 = end - 16 * H
    b0 = start - H  # outside the window (but inside the 2026-11-24 daily bucket)
    rows: list[Any] = [
        _doc("docs", "d1", "document", 2, end - 5 * D),
        _doc("docs", "d2", "document", 3, end - H),      # re-versioned after B1 was served
        _doc("docs", "d3", "document", 1, end - 3 * D, deleted=True),
        _doc("docs", "d4", "document", 4, end - 24 * D),  # v2 long superseded
        _doc("mail", "e1", "email", 1, end - 4 * D),
        _doc("crm", "c1", "crm", 1, end - 30 * timedelta(minutes=1)),
        ConnectorCursor(name="docs", kind="filesystem", cursor={}, updated_at=end - 2 * H),
        ConnectorCursor(name="mail", kind="mbox", cursor={}, updated_at=end - 3 * D),
        # configured connectors: lag comes from their sync runs, not their documents
        ConnectorRow(id="c-crm", name="crm", kind="crm_export", created_at=end - 30 * D),
        SyncRunRow(id="run-crm-1", connector_id="c-crm", status="success",
                   started_at=end - 4 * H, finished_at=end - 3 * H),
        SyncRunRow(id="run-crm-2", connector_id="c-crm", status="failed",
                   started_at=end - 40 * M, finished_at=end - 30 * M, error_code="source_auth"),
        ConnectorRow(id="c-wiki", name="wiki", kind="filesystem", enabled=False,
                     created_at=end - 30 * D),
        SyncRunRow(id="run-wiki-1", connector_id="c-wiki", status="failed",
                   started_at=end - 2 * D, finished_at=end - 2 * D, error_code="source_error"),
        # B1: current d1, d2 (superseded only later), e1; asked document+email: covered.
        _bundle("B1", b1, [_item("docs", "d1", "document", 2, b1 - 10 * D),
                           _item("docs", "d2", "document", 2, b1 - 2 * D),
                           _item("mail", "e1", "email", 1, b1 - 12 * H)],
                ["document", "email"], 120.0, 300),
        # B2: deleted d3, current c1; asked email: not covered.
        _bundle("B2", b2, [_item("docs", "d3", "document", 1, b2 - 20 * D),
                           _item("crm", "c1", "crm", 1, b2 - 6 * H)], ["email"], 80.0, 200),
        # B3: superseded d4, missing d9; asked nothing: not counted for kinds.
        _bundle("B3", b3, [_item("docs", "d4", "document", 2, b3 - 3 * D),
                           _item("docs", "d9", "document", 1, b3 - 12 * H)], [], 900.0, 150),
        # B4: empty; asked crm: not covered.
        _bundle("B4", b4, [], ["crm"], 40.0, 0),
        _bundle("B0", b0, [_item("docs", "d1", "document", 2, b0 - D)], [], 5000.0, 50),
        FeedbackRow(
            id="f1", user_id="alice",
            bundle_id="B1", rating=1, used_item_ids=["d1-chunk", "e1-chunk"],
            created_at=b1 + H),
        FeedbackRow(
            id="f2", user_id="alice",
            bundle_id="B1", rating=1, used_item_ids=["d1-chunk"], created_at=b1 + H),
        FeedbackRow(
            id="f3", user_id="alice",
            bundle_id="B2", rating=-1, used_item_ids=[], created_at=b2 + H),
        FeedbackRow(
            id="f4", user_id="alice",
            bundle_id="B0", rating=1, used_item_ids=["d1-chunk"], created_at=b0 + H),
        EvalRunRow(id="r0", created_at=end - 5 * H, golden_set_id="g", dataset="g",
                   config={"mode": "hybrid", "freshness": True},
                   metrics={"ndcg@10": 0.5, "mrr": 0.5, "recall@bundle": 0.5, "queries": 5}),
        EvalRunRow(id="r1", created_at=end - 4 * H, golden_set_id="g", dataset="g",
                   config={"mode": "hybrid", "freshness": True},
                   metrics={"ndcg@10": 0.6, "mrr": 0.7, "recall@bundle": 0.8, "queries": 5}),
        EvalRunRow(id="r2", created_at=end - 3 * H, golden_set_id="g", dataset="g",
                   config={"mode": "dense", "freshness": True},
                   metrics={"ndcg@10": 0.3, "mrr": 0.3, "recall@bundle": 0.3, "queries": 5}),
    ]
    for at, status, latency in [(end - 3 * H, 200, 10.0), (end - 4 * H, 200, 20.0),
                                (end - 5 * H, 200, 30.0), (end - 6 * H, 422, 40.0),
                                (end - 7 * H, 500, 1000.0), (start - H, 500, 99999.0)]:
        rows.append(ContextRequestRow(created_at=at, status=status, latency_ms=latency))
    with session_scope(engine) as session:
        session.add_all(rows)


# Worked out by hand from the rows above.
EXPECTED: dict[str, Any] = {
    # B1, B2, B4 named kinds; only B1 holds all it named.
    "completeness.requested_kinds_covered": (1 / 3, 3),
    # latest default-config run in the window is r1 (r2 is dense-only, r0 older)
    "completeness.golden_recall_at_bundle": (0.8, 5),
    # items: d1 ok, d2 ok (v3 written after B1), e1 ok, d3 deleted, c1 ok, d4 superseded,
    # d9 missing -> 4 of 7
    "accuracy.current_share": (4 / 7, 7),
    "accuracy.breakdown": {"current": 4, "superseded": 1, "deleted": 1, "missing": 1},
    "relevance.ndcg@10": (0.6, 5),
    "relevance.mrr": (0.7, 5),
    # bundles with feedback in the window: B1 (3 served, used {d1, e1}) and B2 (2, none)
    "relevance.used_served_ratio": (2 / 5, 5),
    # ages (days): B1 10, 2, 0.5; B2 20, 0.25; B3 3, 0.5 -> sorted
    # [0.25, 0.5, 0.5, 2, 3, 10, 20]: p50 = 2, p95 = 10 + 0.7 * 10 = 17
    "freshness.item_age_days": (2.0, 7),
    "freshness.item_age_days.p95": 17.0,
    # documents [0.5, 2, 3, 10, 20]: p50 3, p95 10 + 0.8 * 10 = 18
    "freshness.per_kind": {"document": (3.0, 18.0, 5), "email": (0.5, 0.5, 1),
                           "crm": (0.25, 0.25, 1)},
    # docs (no configured connector): max(cursor END-2h, d2 written END-1h) -> 3600 s;
    # mail: cursor END-3d -> 259200; crm (configured): its last success run ended END-3h ->
    # 10800 (its document write at END-30min and the later failed run do not count);
    # wiki never succeeded -> no lag. Objective 1 day: docs and crm within -> 2/4.
    "freshness.connector_lag_seconds": (2 / 4, 4),
    "freshness.lags": {"docs": 3600.0, "mail": 259200.0, "crm": 10800.0, "wiki": None},
    # latencies [10, 20, 30, 40, 1000]: p50 30, p95 40 + 0.8 * 960, p99 40 + 0.96 * 960
    "accessibility.latency_ms": (30.0, 5),
    "accessibility.latency_ms.p95": 808.0,
    "accessibility.latency_ms.p99": 961.6,
    "accessibility.error_rate": (2 / 5, 5),  # 422 and 500
    "accessibility.server_error_rate": 1 / 5,
    "accessibility.found_context_rate": (3 / 4, 4),  # B4 is empty
}
