"""The traced query graph gives the eager model's vectors, for any query the API admits."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from contextd.core.embedder import QueryGraph, SentenceTransformerEncoder, _tokenizer_of

QUERIES = [
    "x",
    "what is the effect of vitamin d on bone density in older adults?",
    "Ünïcödé — query? with punctuation!! 東京 €45",
    "word " * 600,  # past the model's 256-token window: truncated alike
    "   leading and trailing space   ",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_graph_matches_the_eager_model(encoder: SentenceTransformerEncoder,
                                             query: str) -> None:
    assert encoder._query_graph is not None, "the bundled model must trace"
    assert encoder._query_graph._tokenize.__name__ == "direct"  # its own tokenizer, checked
    traced = encoder.encode_query(query)
    eager = encoder.model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert traced.dtype == np.float32 and traced.shape == eager.shape
    assert np.abs(traced - eager).max() < 1e-5
    assert abs(float(np.linalg.norm(traced)) - 1.0) < 1e-5


def test_submitted_queries_are_tokenized_on_the_callers_thread(
        encoder: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder.encode_query("build the graph")  # traced on the model thread
    graph = encoder._query_graph
    assert graph is not None and graph.tokenizes_anywhere
    threads: list[str] = []
    tokenize = graph.tokenize

    def recording(text: str) -> Any:
        threads.append(threading.current_thread().name)
        return tokenize(text)

    monkeypatch.setattr(graph, "tokenize", recording)
    vector = encoder.submit_query("travel per diem").result()
    assert threads == [threading.current_thread().name]
    eager = encoder.model.encode(["travel per diem"], normalize_embeddings=True,
                                 convert_to_numpy=True)[0]
    assert np.abs(vector - eager).max() < 1e-5


def test_queries_from_many_threads_beside_document_batches_embed_exactly(
        encoder: SentenceTransformerEncoder) -> None:
    """The graph's tokenizer is its own copy behind a lock: callers on many threads while
    the model thread tokenizes documents neither fail nor mix up their inputs."""
    encoder.encode_query("build the graph")
    queries = [f"{q} {n}" for n in range(6) for q in QUERIES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        documents = pool.submit(encoder.encode_documents, ["a travel policy paragraph"] * 256)
        vectors = [f.result() for f in pool.map(encoder.submit_query, queries)]
        documents.result()
    eager = encoder.model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(np.stack(vectors) - eager).max() < 1e-4


def test_documents_and_queries_share_one_space(encoder: SentenceTransformerEncoder) -> None:
    text = "Support tickets are answered within four business hours."
    (document,) = encoder.encode_documents([text])
    assert float(document @ encoder.encode_query(text)) > 0.9999


def test_a_model_that_cannot_be_traced_embeds_queries_eagerly(
        encoder: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def fail(model: object) -> QueryGraph:
        raise RuntimeError("not traceable")

    monkeypatch.setattr(QueryGraph, "trace", staticmethod(fail))
    fallback = SentenceTransformerEncoder()
    fallback.__dict__["model"] = encoder.model  # share the loaded weights
    with caplog.at_level(logging.WARNING, logger="contextd.core.embedder"):
        vector = fallback.encode_query("travel per diem")
    assert fallback._query_graph is None
    assert any(getattr(r, "event", "") == "query_graph_unavailable" for r in caplog.records)
    eager = encoder.model.encode(["travel per diem"], normalize_embeddings=True,
                                 convert_to_numpy=True)[0]
    assert np.abs(vector - eager).max() < 1e-5


def test_a_tokenizer_that_differs_from_preprocess_is_not_used() -> None:
    ids = torch.tensor([[101, 7592, 102]])

    class Model:
        max_seq_length = 256

        def preprocess(self, texts: list[str]) -> dict[str, Any]:
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def tokenizer(self, texts: list[str], **kwargs: Any) -> dict[str, Any]:
            return {"input_ids": ids + 1, "attention_mask": torch.ones_like(ids)}

    tokenize = _tokenizer_of(Model(), ["input_ids", "attention_mask"])
    assert torch.equal(tokenize("x")["input_ids"], ids)  # preprocess, not the tokenizer


def test_a_query_on_an_idle_model_thread_is_running_when_submit_returns(
        encoder: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """``submit_query`` waits (at most ``_START_WAIT_SECONDS``) for an idle model thread to
    enter the graph, so the caller's Python that follows does not hold it off; behind
    queued work it returns at once. The count of queued work returns to zero, cancelled
    work included."""
    import time

    from contextd.core import embedder

    encoder.encode_query("build the graph")
    graph = encoder._query_graph
    assert graph is not None and graph.tokenizes_anywhere
    events: list[threading.Event] = []

    class Recorded(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            events.append(self)

    monkeypatch.setattr(embedder.threading, "Event", Recorded)
    monkeypatch.setattr(embedder, "_START_WAIT_SECONDS", 5.0)  # generous: never the limit here
    future = encoder.submit_query("travel per diem")
    assert events and events[-1].is_set()  # the model thread was in before submit returned
    future.result()
    monkeypatch.undo()

    gate = threading.Event()
    blocker = encoder._submit(lambda: (gate.wait(10), np.zeros(1))[1])  # the thread is busy
    started = time.perf_counter()
    queued = encoder.submit_query("queued behind a batch")
    assert time.perf_counter() - started < 1.0  # did not wait for a busy thread
    dropped = encoder.submit_query("cancelled before it runs")
    assert dropped.cancel()
    gate.set()
    blocker.result()
    queued.result()
    assert encoder._queued == 0
