"""The written definition served next to every quality figure (what exactly is counted)."""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "completeness": "Does the bundle hold what the agent needed?",
    "completeness.golden_recall_at_bundle":
        "Mean over golden-set queries of (judged-relevant documents present in the bundle) / "
        "(judged-relevant documents), from the latest eval run in the window under the "
        "default configuration (hybrid, freshness on).",
    "completeness.requested_kinds_covered":
        "Share of served bundles that hold at least one item of every kind the request "
        "named in 'kinds'; requests that named no kinds are not counted.",
    "accuracy": "Was what we served true to the source at the time?",
    "accuracy.current_share":
        "Share of served items that were the current version when served and have not "
        "been deleted since, checked against the documents table: the document exists, is "
        "not deleted, and its version equals the served one, or is exactly one newer and "
        "was written after the bundle was served. An item served as an older version "
        "of its entity (marked superseded) counts as superseded. Anything else counts as "
        "not current.",
    "relevance": "Did the bundle rank what matters first?",
    "relevance.ndcg@10":
        "Mean nDCG@10 (gain 2^grade - 1, documents in order of first appearance in the "
        "bundle) of the latest eval run in the window under the default configuration.",
    "relevance.mrr":
        "Mean reciprocal rank of the first judged-relevant document in the bundle (0 when "
        "none), same run as nDCG@10.",
    "relevance.used_served_ratio":
        "Over bundles served in the window that received feedback: items the agent "
        "reported using / items served.",
    "freshness": "How old is what we served, and how far behind are the sources?",
    "freshness.item_age_days":
        "Age of each served item when served (bundle time - item updated_at), in days: "
        "p50 and p95 per kind and over all kinds (linear interpolation).",
    "freshness.connector_lag_seconds":
        "Per connector: now - the end of its last successful sync run (status success or "
        "partial; for a source loaded without a configured connector, its last checkpoint "
        "or document write), against the objective CONTEXTD_QUALITY_LAG_OBJECTIVE_SECONDS; "
        "value is the share of connectors within the objective (one that never succeeded "
        "is not). Measured at the window end; a sync after it counts as lag 0.",
    "accessibility": "Could agents get context, quickly and without errors?",
    "accessibility.latency_ms":
        "End-to-end latency of POST /v1/context as measured by the server (every "
        "request, failures included): p50, p95, p99 (linear interpolation).",
    "accessibility.error_rate":
        "Share of POST /v1/context requests answered with a status >= 400 "
        "(server_error_rate: >= 500).",
    "accessibility.found_context_rate":
        "Share of served bundles with found=true: at least one item reached the request's "
        "min_relevance (calibrated relevance). Only such items are served, so a found "
        "bundle is one holding items; a bundle of unrelated items no longer counts.",
}
