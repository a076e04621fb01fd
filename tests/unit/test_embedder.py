"""The model owner: exact vectors and token counts from one thread, concurrent queries
sharing a forward pass; documents embedded by a lower-priority child process that queries
never wait for (or, in process, as small jobs a query waits behind at most one of); a
child that dies is restarted, one that cannot run fails the batch (real all-MiniLM-L6-v2).
The query child is tested in tests/unit/test_query_process.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contextd.core.document_process import DocumentProcess
from contextd.core.embedder import (
    SentenceTransformerEncoder,
    model_dimension,
    resolve_model_path,
)
from contextd.core.errors import Unavailable
from tests.factories import wait_for

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


@pytest.fixture(scope="module")
def in_process() -> Iterator[SentenceTransformerEncoder]:
    """An encoder that embeds queries, and documents as jobs, on its own model thread."""
    enc = SentenceTransformerEncoder(document_process=False, query_process=False)
    yield enc
    enc.close()


@pytest.fixture(params=["child process", "model thread"])
def either(request: pytest.FixtureRequest, encoder: SentenceTransformerEncoder,
           in_process: SentenceTransformerEncoder) -> SentenceTransformerEncoder:
    """Both ways of embedding documents."""
    return encoder if request.param == "child process" else in_process


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
        either: SentenceTransformerEncoder) -> None:
    """Texts are grouped by length into jobs; the vectors come back in input order."""
    texts = [f"policy {n} " + "detail " * (n % 5) * 4 for n in range(24)]
    vectors = either.encode_documents(texts)
    assert vectors.dtype == np.float32
    assert np.abs(vectors - reference(either, texts)).max() < 1e-5


def test_documents_embed_in_a_child_as_the_parent_would(
        encoder: SentenceTransformerEncoder) -> None:
    """The child's vectors are the parent's own forward pass's (the query lane), and its
    token counts the parent's."""
    texts = QUERIES + [f"clause {n}: " + "receipts and allowances " * n for n in range(12)]
    vectors = encoder.encode_documents(texts)
    documents = encoder.documents
    assert documents is not None and documents.pid not in (None, os.getpid())
    parent = np.stack([encoder.encode_query(t) for t in texts])
    assert np.abs(vectors - parent).max() < 1e-5
    assert np.abs(vectors - reference(encoder, texts)).max() < 1e-5
    _, tokens, cpu_seconds = documents.encode(texts)
    assert tokens.tolist() == [encoder.count_tokens([t]) for t in texts]
    assert cpu_seconds > 0  # the child's CPU, reported as the batch's embedding cost
    embedded = encoder.embed_documents(texts)
    assert embedded.tokens == encoder.count_tokens(texts) and embedded.cpu_seconds > 0


def test_queries_never_wait_behind_document_embedding(
        encoder: SentenceTransformerEncoder) -> None:
    """While a large document batch embeds in the child, queries run on the model thread
    at once: no document job runs there, none is waited behind, and the queries are
    answered long before the batch ends."""
    encoder.encode_query("load the model")
    documents = encoder.documents
    assert documents is not None
    texts = [f"paragraph {n} about travel allowances, receipts and per diem rates " * 4
             for n in range(800)]
    counts = encoder.owner.counts
    before = counts["document_jobs"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        batch = pool.submit(encoder.encode_documents, texts)
        wait_for(lambda: documents.busy)
        answered = [encoder.submit_query(f"what is the travel per diem? {n}").result(timeout=60)
                    for n in range(5)]
        still_embedding = not batch.done()
        assert batch.result().shape == (len(texts), encoder.dim)
    assert still_embedding
    assert all(a.waited_documents == 0 for a in answered)
    assert counts["document_jobs"] == before  # nothing of the batch ran on the model thread


def test_concurrent_queries_share_a_forward_pass_and_embed_exactly(
        in_process: SentenceTransformerEncoder) -> None:
    encoder = in_process
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


def test_in_process_a_query_waits_behind_at_most_one_document_job(
        in_process: SentenceTransformerEncoder) -> None:
    """Submitted while a large document batch embeds on the model thread, the query runs
    after the job that was running (the owner's counters say so), long before the batch
    ends."""
    encoder = in_process
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
        either: SentenceTransformerEncoder) -> None:
    encoder = either
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
        either: SentenceTransformerEncoder) -> None:
    """In process, after ``documents_every`` query batches a waiting document job runs;
    in the child, documents never wait for the model thread."""
    encoder = either
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
        in_process: SentenceTransformerEncoder) -> None:
    encoder = in_process
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


def test_a_child_that_dies_is_restarted_and_one_that_cannot_run_fails_the_batch(
        encoder: SentenceTransformerEncoder) -> None:
    """The child runs at the lower CPU priority. Killed mid-batch, it is started again
    and the batch sent once more (same vectors); killed again on that retry, the batch
    fails with ``Unavailable`` instead of hanging."""
    texts = [f"expense rule {n}: " + "receipts are kept for seven years " * 6
             for n in range(200)]
    want = encoder.encode_documents(texts)
    documents = DocumentProcess(resolve_model_path(encoder.name))  # the default nice
    documents.encode(["start the child"])
    assert documents.nice == 10 and documents.pid not in (None, os.getpid())
    assert os.getpriority(os.PRIO_PROCESS, documents.pid) == min(
        19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    kills = {"left": 1}

    def killer() -> None:
        """Kill each child a batch was sent to, while kills are left."""
        seen = documents.batches
        while kills["left"] > 0:
            pid = documents.pid
            if documents.busy and documents.batches > seen and pid:
                seen = documents.batches
                time.sleep(0.2)  # into the batch
                os.kill(pid, signal.SIGKILL)
                kills["left"] -= 1
            time.sleep(0.01)

    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            watcher = pool.submit(killer)
            vectors, _, _ = documents.encode(texts)
            watcher.result(timeout=60)
        assert documents.starts == 2
        assert np.abs(vectors - want).max() < 1e-5
        assert os.getpriority(os.PRIO_PROCESS, documents.pid) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + 10)

        kills["left"] = 2
        with ThreadPoolExecutor(max_workers=1) as pool:
            watcher = pool.submit(killer)
            started = time.monotonic()
            with pytest.raises(Unavailable, match="died twice"):
                documents.encode(texts)
            watcher.result(timeout=60)
        assert time.monotonic() - started < 300
        assert documents.starts == 3
    finally:
        documents.close()


def test_a_child_that_cannot_load_the_model_fails_the_batch_at_once(tmp_path: Path) -> None:
    documents = DocumentProcess(tmp_path / "no-model-here")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not start"):
            documents.encode(["a clause of the travel policy"])
        assert time.monotonic() - started < 120
        assert documents.starts == 1 and documents.pid is None
    finally:
        documents.close()


def test_the_dimension_is_read_from_the_model_files_without_loading_it(
        encoder: SentenceTransformerEncoder) -> None:
    fresh = SentenceTransformerEncoder()
    try:
        assert fresh.dim == 384
        assert fresh.queries is not None and fresh.queries.pid is None  # no child started
        assert fresh._model is None  # nor the model loaded here
    finally:
        fresh.close()
    assert fresh.dim == int(encoder.model.get_embedding_dimension())


def test_model_dimension_follows_pooling_modes_and_dense_layers(tmp_path: Path) -> None:
    def model(*modules: tuple[str, str, dict[str, object]]) -> Path:
        path = tmp_path / str(len(list(tmp_path.iterdir())))
        path.mkdir()
        (path / "modules.json").write_text(json.dumps([
            {"idx": n, "name": str(n), "path": sub, "type": f"sentence_transformers.models.{kind}"}
            for n, (kind, sub, _) in enumerate(modules)]))
        for _, sub, config in modules:
            if config:
                (path / sub).mkdir(exist_ok=True)
                (path / sub / "config.json").write_text(json.dumps(config))
        return path

    pooling = {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True}
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1_Pooling", pooling),
                                 ("Normalize", "2_Normalize", {}))) == 768
    both = pooling | {"pooling_mode_cls_token": True}
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1", both))) == 1536
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1", pooling),
                                 ("Dense", "2_Dense", {"out_features": 256}))) == 256
    # The format this sentence-transformers writes: one mode by name, or a list of them.
    current = {"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True}
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1", current))) == 384
    listed = current | {"pooling_mode": ["cls", "max"]}
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1", listed))) == 768
    # A module not understood here, or no files at all: the caller loads the model instead.
    assert model_dimension(model(("Transformer", "", {}), ("Pooling", "1", pooling),
                                 ("LayerNorm", "2", {}))) is None
    assert model_dimension(tmp_path / "missing") is None
