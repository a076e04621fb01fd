"""The ingest pipeline against the real Edge store, real SQLite and the real encoder."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pytest

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.model_owner import DocumentEmbedding, QueryEmbedding
from contextd.core.types import AccessScope, Tombstone
from contextd.retrieval.schemas import ContextQuery
from contextd.runtime import Runtime
from contextd.state.documents import get_documents
from tests.factories import record

EVERYONE = AccessScope(frozenset({"public", "group:sales", "group:finance"}))


class CountingEncoder:
    """Wraps the real encoder and counts the texts it embeds."""

    def __init__(self, inner: SentenceTransformerEncoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.embedded: list[str] = []

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_documents(texts)

    def embed_documents(self, texts: Sequence[str]) -> DocumentEmbedding:
        self.embedded.extend(texts)
        return self.inner.embed_documents(texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self.inner.encode_query(text)

    def submit_query(self, text: str) -> Future[QueryEmbedding]:
        return self.inner.submit_query(text)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return self.inner.count_tokens(texts)


@pytest.fixture
def counting(encoder: SentenceTransformerEncoder) -> CountingEncoder:
    return CountingEncoder(encoder)


@pytest.fixture
def rt(make_runtime, counting: CountingEncoder) -> Runtime:  # type: ignore[no-untyped-def]
    runtime: Runtime = make_runtime(chunk_size=40, chunk_overlap=0)
    runtime.dense_encoder = counting
    return runtime


def served_texts(runtime: Runtime, query: str, scope: AccessScope = EVERYONE) -> list[str]:
    hits = runtime.retriever.search(ContextQuery(query=query, user_id="t"), scope, limit=50)
    return [str(h.hit.payload["text"]) for h in hits]


LONG = " ".join(f"Paragraph {i} explains rule number {i} of the expense policy in detail."
                for i in range(12))


def test_unchanged_corpus_is_not_embedded_again(rt: Runtime, counting: CountingEncoder) -> None:
    docs = [record(f"d{i}.md", f"{LONG} Document {i}.") for i in range(5)]
    first = rt.ingestor.ingest(docs)
    assert first.chunks_embedded == len(counting.embedded) > 5
    counting.embedded.clear()
    again = rt.ingestor.ingest(docs)
    assert again.unchanged == 5
    assert again.chunks_embedded == 0
    assert counting.embedded == []


def test_changed_document_reembeds_only_changed_chunks_and_old_text_is_gone(
        rt: Runtime, counting: CountingEncoder) -> None:
    rt.ingestor.ingest([record("policy.md", LONG + " Per diem is 50 EUR.")])
    total = rt.store.count()
    counting.embedded.clear()
    stats = rt.ingestor.ingest([record("policy.md", LONG + " Per diem is 95 EUR.")])
    assert 0 < stats.chunks_embedded < total
    assert stats.chunks_deleted == stats.chunks_embedded
    assert rt.store.count() == total
    texts = " ".join(served_texts(rt, "per diem EUR"))
    assert "95 EUR" in texts
    assert "50 EUR" not in texts
    row = get_documents(rt.engine, source="docs", source_ids=["policy.md"])["policy.md"]
    assert row.version == 2


def test_tombstone_removes_every_chunk(rt: Runtime) -> None:
    rt.ingestor.ingest([record("a.md", LONG), record("b.md", "Unrelated note about lunch.")])
    stats = rt.ingestor.ingest([], [Tombstone("docs", "a.md")])
    assert stats.deleted == 1
    assert rt.store.count() == 1
    assert all("expense policy" not in t for t in served_texts(rt, "expense policy rule"))
    row = get_documents(rt.engine, source="docs", source_ids=["a.md"])["a.md"]
    assert row.deleted and row.chunk_ids == []


def test_acl_change_rewrites_acl_without_embedding(rt: Runtime, counting: CountingEncoder) -> None:
    rt.ingestor.ingest([record("memo.md", "Quarterly EBITDA memo.", acl=("public",))])
    counting.embedded.clear()
    stats = rt.ingestor.ingest([record("memo.md", "Quarterly EBITDA memo.",
                                       acl=("group:finance",))])
    assert stats.chunks_embedded == 0 and stats.chunks_kept == 1
    assert served_texts(rt, "EBITDA memo", AccessScope(frozenset({"public"}))) == []
    assert served_texts(rt, "EBITDA memo", AccessScope(frozenset({"group:finance"})))


def test_crash_after_store_write_resumes_without_reembedding(
        rt: Runtime, counting: CountingEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextd.ingest.pipeline as pipeline

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between store write and SQL commit")

    docs = [record(f"d{i}.md", f"{LONG} Document {i}.") for i in range(3)]
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "save_documents", crash)
        with pytest.raises(RuntimeError):
            rt.ingestor.ingest(docs)
    first_embedded = len(counting.embedded)
    counting.embedded.clear()
    stats = rt.ingestor.ingest(docs)
    assert first_embedded > 0
    assert stats.chunks_embedded == 0, "finished work was embedded again"
    assert stats.changed == 3
    assert rt.store.count() == first_embedded


def test_duplicate_records_in_one_batch_last_wins(rt: Runtime) -> None:
    rt.ingestor.ingest([record("x.md", "first text about apples"),
                        record("x.md", "second text about pears")])
    texts = served_texts(rt, "fruit")
    assert texts == ["second text about pears"]


def test_replacement_is_atomic_for_concurrent_searches(rt: Runtime) -> None:
    """A searcher never sees both versions of a document, nor neither."""
    versions = [" ".join(f"Clause {i} of version {v}: refunds take {v} days." for i in range(8))
                for v in range(6)]
    rt.ingestor.ingest([record("terms.md", versions[0])])
    stop = threading.Event()
    violations: list[str] = []

    def searcher() -> None:
        while not stop.is_set():
            hits = rt.retriever.search(ContextQuery(query="refund clause", user_id="t"),
                                       EVERYONE, limit=100, freshness=False)
            seen = {h.hit.payload["doc_version"] for h in hits}
            if len(seen) != 1:
                violations.append(f"versions visible together: {sorted(seen)}")

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        for text in versions[1:]:
            rt.ingestor.ingest([record("terms.md", text)])
    finally:
        stop.set()
        thread.join()
    assert violations == []
