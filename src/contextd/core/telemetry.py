"""Metrics (Prometheus) and traces (OpenTelemetry) in one place.

Metric names and what they mean are listed in docs/operations.md. The
registry is contextd's own so tests and embedded use never collide with other libraries'
metrics. Tracing always creates spans (so every log line and response carries a trace id);
exporting them is off by default, OTLP/HTTP when ``otlp_endpoint`` is set, console when
``trace_console`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("contextd_http_requests_total", "HTTP requests by route and status.",
                        ["method", "route", "status"], registry=REGISTRY)
REQUESTS_REJECTED = Counter(
    "contextd_requests_rejected_total",
    "POST /v1/context calls refused before a key was known (no SQL row is written for "
    "them): bad_key (401), too_large (413), bad_request (400), other.",
    ["reason"], registry=REGISTRY)
HTTP_LATENCY = Histogram("contextd_http_request_duration_seconds",
                         "HTTP request latency by route.", ["method", "route"],
                         buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CONTEXT_STAGE = Histogram("contextd_context_stage_seconds",
                          "Time per stage of a context request (principals, embed, search, "
                          "rank, memory, pack).", ["stage"], buckets=_LATENCY_BUCKETS,
                          registry=REGISTRY)
CONTEXT_ITEMS = Histogram("contextd_context_items", "Items per served bundle.",
                          buckets=(0, 1, 2, 5, 10, 20, 50, 100), registry=REGISTRY)
DEFERRED_ROWS = Counter(
    "contextd_deferred_rows_total",
    "Rows written after their request (audit of context requests, bundles served, costs, "
    "outcomes), by outcome: written, or dropped (refused by the database, or the writer "
    "was too far behind).", ["outcome"], registry=REGISTRY)
DEFERRED_PENDING = Gauge("contextd_deferred_rows_pending",
                         "Rows queued for the deferred writer, not yet written.",
                         registry=REGISTRY)
TOKENS_SERVED = Counter("contextd_tokens_served_total", "cl100k tokens served, per agent key.",
                        ["agent"], registry=REGISTRY)
SYNC_RUNS = Counter("contextd_sync_runs_total", "Connector runs by outcome.",
                    ["connector", "outcome"], registry=REGISTRY)
SYNC_RECORDS = Counter("contextd_sync_records_pulled_total", "Records pulled from sources.",
                       ["connector"], registry=REGISTRY)
SYNC_CHUNKS_EMBEDDED = Counter("contextd_sync_chunks_embedded_total", "Chunks embedded.",
                               ["connector"], registry=REGISTRY)
SYNC_SKIPPED = Counter("contextd_sync_records_unchanged_total",
                       "Records skipped as unchanged (no chunking, no embedding).",
                       ["connector"], registry=REGISTRY)
SYNC_DELETED = Counter("contextd_sync_records_deleted_total", "Records tombstoned.",
                       ["connector"], registry=REGISTRY)
SYNC_QUARANTINED = Counter("contextd_sync_records_quarantined_total",
                           "Records that failed and were set aside.", ["connector"],
                           registry=REGISTRY)
SYNC_RETRIES = Counter("contextd_sync_retries_total",
                       "Transient source errors retried after a backoff, per run step.",
                       ["connector", "step"], registry=REGISTRY)
CONNECTOR_LAG = Gauge("contextd_connector_lag_seconds",
                      "Seconds since the connector's last successful run (set at scrape "
                      "time; absent before its first success).", ["connector"],
                      registry=REGISTRY)
CONNECTOR_FAILING = Gauge("contextd_connector_failing",
                          "1 when the connector's last finished run failed (set at scrape "
                          "time).", ["connector"], registry=REGISTRY)
SOURCE_HTTP_RETRIES = Counter("contextd_source_http_retries_total",
                              "Source API requests retried (reason: rate_limited, "
                              "server_error, timeout, connection).", ["connector", "reason"],
                              registry=REGISTRY)
EMBED_BATCH = Histogram("contextd_embedding_batch_size",
                        "Texts per forward pass of the model (a query micro-batch or a "
                        "document job).",
                        ["purpose"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                        registry=REGISTRY)
EMBED_SECONDS = Histogram("contextd_embedding_seconds", "Wall time per forward pass of the model.",
                          ["purpose"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
EMBED_TOKENS = Counter("contextd_embedding_tokens_total",
                       "Model (wordpiece) tokens embedded.", ["purpose"], registry=REGISTRY)
ERRORS = Counter("contextd_errors_total", "Errors answered, by error code.", ["code"],
                 registry=REGISTRY)
RATE_LIMITED = Counter("contextd_rate_limited_total", "Requests refused with 429, per key name.",
                       ["agent"], registry=REGISTRY)
REDACTIONS = Counter("contextd_redactions_total", "Matches masked in served text, by rule.",
                     ["rule"], registry=REGISTRY)
STORE_POINTS = Gauge("contextd_store_points", "Chunks in the vector store (at scrape time).",
                     registry=REGISTRY)
STORE_CONSISTENT = Gauge("contextd_store_consistent",
                         "1 when the last check found every chunk SQL names in the store.",
                         registry=REGISTRY)
STORE_MISSING_CHUNKS = Gauge("contextd_store_missing_chunks",
                             "Chunks SQL names that the store lacked at the last check.",
                             registry=REGISTRY)
STORE_REBUILDS = Counter("contextd_store_rebuild_sources_total",
                         "Sources re-embedded from their connector after a failed check.",
                         ["outcome"], registry=REGISTRY)
# memory
MEMORY_INTERACTIONS = Counter("contextd_memory_interactions_recorded_total",
                              "Interactions recorded (SQL row and vector).", registry=REGISTRY)
MEMORY_RECALL = Counter("contextd_memory_recall_total",
                        "Context requests by memory outcome (ok, unavailable, disabled).",
                        ["status"], registry=REGISTRY)
MEMORY_PURGED = Counter("contextd_memory_interactions_purged_total",
                        "Interactions removed, by reason (ttl, forget).", ["reason"],
                        registry=REGISTRY)
FACTS_RECORDED = Counter("contextd_entity_facts_recorded_total",
                         "New entity fact values recorded from CRM records.", registry=REGISTRY)

tracer = trace.get_tracer("contextd")
_configured = False


def configure_tracing(*, otlp_endpoint: str | None = None, console: bool = False,
                      extra_processor: SpanProcessor | None = None) -> None:
    """Install the tracer provider once per process; exporters only when asked."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if extra_processor is not None and isinstance(provider, TracerProvider):
            provider.add_span_processor(extra_processor)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "contextd"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _configured = True


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None outside a span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child span of whatever is active, with attributes that are not None."""
    with tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key, value)
        yield current
