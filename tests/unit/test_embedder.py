"""The model owner: exact vectors and token counts from one thread, queries ahead of
document jobs, concurrent queries sharing a forward pass (real all-MiniLM-L6-v2)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from contextd.core.embedder import SentenceTransformerEncoder

QUERIES = [
    "x",
    "what is the effect of vitamin d on bone density in older adults?",
    "Ünïcödé — query? with punctuation!! 東京 €45",
    "word " * 600,  # past the model's 256-token window: truncated alike
    "   leading and trailing space   ",
]


def reference(encoder: SentenceTransformerEncoder, texts: list[str]) -> np.ndarray:
    """sentence-transformers' own ``encode`` of ``texts`` one at a time (no padding), run
    on the model thread like everything else that touches the model."""
    model = encoder.model

    def encode() -> Any:
        return np.stack([model.encode([t], normalize_embeddings=True, convert_to_numpy=True)[0]
                         for t in texts])

    return encoder.owner.submit(encode, urgent=True).result()


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_query_vectors_equal_sentence_transformers_encode(
        encoder: SentenceTransformerEncoder) -> None:
    want = reference(encoder, QUERIES)
    alone = np.stack([encoder.encode_query(q) for q in QUERIES])
    assert alone.dtype == np.float32 and alone.shape == want.shape
    assert np.abs(alone - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)


def test_documents_and_queries_share_one_space(encoder: SentenceTransformerEncoder) -> None:
    text = "Support tickets are answered within four business hours."
    (document,) = encoder.encode_documents([text])
    assert float(document @ encoder.encode_query(text)) > 0.9999


def test_document_vectors_keep_their_order_across_jobs(
        encoder: SentenceTransformerEncoder) -> None:
    """Texts are grouped by length into jobs; the vectors come back in input order."""
    texts = [f"policy {n} " + "detail " * (n % 5) * 4 for n in range(24)]
    vectors = encoder.encode_documents(texts)
    assert np.abs(vectors - reference(encoder, texts)).max() < 1e-5


def test_concurrent_queries_share_a_forward_pass_and_embed_exactly(
        encoder: SentenceTransformerEncoder) -> None:
    encoder.encode_query("load the model")
    queries = [f"{q} {n}" for n in range(3) for q in QUERIES]
    want = reference(encoder, queries)
    gate = threading.Event()
    blocker = encoder.owner.submit(lambda: gate.wait(30), urgent=True)  # the thread is busy
    futures = [encoder.submit_query(q) for q in queries]
    gate.set()
    blocker.result()
    results = [f.result(timeout=120) for f in futures]
    assert max(r.batch_size for r in results) > 1  # the waiting queries went in together
    assert np.abs(np.stack([r.vector for r in results]) - want).max() < 1e-5
    counted = [encoder.count_tokens([q]) for q in queries]
    assert [r.tokens for r in results] == counted


def test_a_query_waits_behind_at_most_one_document_job(
        encoder: SentenceTransformerEncoder) -> None:
    """Submitted while a large document batch embeds, the query runs after the job that
    was running (the owner's counters say so), long before the batch ends."""
    encoder.encode_query("load the model")
    texts = [f"paragraph {n} about travel allowances and receipts" for n in range(160)]
    jobs_in_batch = len(encoder.document_jobs(texts))
    counts = encoder.owner.counts
    before = counts["document_jobs"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        batch = pool.submit(encoder.encode_documents, texts)
        wait_for(lambda: counts["document_jobs"] >= before + 2)
        embedded = encoder.submit_query("what is the travel per diem?").result(timeout=60)
        done_at = counts["document_jobs"] - before
        batch.result()
    assert embedded.waited_documents <= 1
    assert done_at <= 4 < jobs_in_batch  # answered while most of the batch was still queued
    assert counts["document_jobs"] - before == jobs_in_batch


def test_token_counts_from_many_threads_beside_document_batches_stay_exact(
        encoder: SentenceTransformerEncoder) -> None:
    texts = [q * (n + 1) for n, q in enumerate(QUERIES * 4)]
    want = [encoder.count_tokens([t]) for t in texts]
    documents = ["a travel policy paragraph with several clauses"] * 48
    with ThreadPoolExecutor(max_workers=6) as pool:
        batches = [pool.submit(encoder.encode_documents, documents) for _ in range(2)]
        got = list(pool.map(lambda t: encoder.count_tokens([t]), texts * 3))
        for batch in batches:
            assert batch.result().shape == (48, encoder.dim)
    assert got == want * 3
    assert encoder.count_tokens(texts) == sum(want)


def test_a_stream_of_queries_does_not_starve_documents(
        encoder: SentenceTransformerEncoder) -> None:
    """After ``documents_every`` query batches a waiting document job runs."""
    encoder.encode_query("load the model")
    stop = threading.Event()

    def flood() -> int:
        sent = 0
        while not stop.is_set():
            encoder.encode_query(f"query {sent}")
            sent += 1
        return sent

    with ThreadPoolExecutor(max_workers=3) as pool:
        floods = [pool.submit(flood) for _ in range(2)]
        vectors = encoder.encode_documents(["a clause of the travel policy"] * 48)
        stop.set()
        assert sum(f.result() for f in floods) > 0
    assert vectors.shape == (48, encoder.dim)


def test_a_cancelled_query_is_not_run_and_a_failing_job_fails_alone(
        encoder: SentenceTransformerEncoder) -> None:
    gate = threading.Event()
    blocker = encoder.owner.submit(lambda: gate.wait(30), urgent=True)
    dropped = encoder.submit_query("cancelled before it runs")
    kept = encoder.submit_query("still served")
    assert dropped.cancel()

    def fail() -> None:
        raise ValueError("bad job")

    failing = encoder.owner.submit(fail)
    gate.set()
    blocker.result()
    assert kept.result(timeout=60).batch_size == 1  # the cancelled one left the batch
    with pytest.raises(ValueError, match="bad job"):
        failing.result(timeout=60)
    assert encoder.encode_query("the thread lives on").shape == (encoder.dim,)
