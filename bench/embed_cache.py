"""A dense encoder that remembers vectors on disk, keyed by model and text.

The quality bench runs every mode (dense, BM25, hybrid; freshness on and off) over the same
corpora: each document chunk is embedded once, and a rerun of the bench reuses the vectors
(``bench/.cache/<model>.npz``), so a rerun embeds nothing it embedded before. The key is
the SHA-1 of the exact text embedded (title line + chunk), so a change of chunking gives
new keys and can never serve a stale vector. Queries are cached the same way (in their own
key space: the model may embed queries and documents differently).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from contextd.core.embedder import DenseEncoder
from contextd.core.model_owner import DocumentEmbedding, QueryEmbedding

# Vectors embedded since the last write after which the file is written again, so an
# interrupted first run keeps most of its work.
SAVE_EVERY = 2000


class CachedEncoder:
    """``inner`` with documents and queries served from ``directory/<model>.npz`` when it
    can."""

    def __init__(self, inner: DenseEncoder, directory: Path) -> None:
        self.inner = inner
        self.path = Path(directory) / f"{inner.name.replace('/', '_')}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._unsaved = 0
        self.embedded = 0  # texts this process had to run the model on
        if self.path.is_file():
            with np.load(self.path) as data:
                self._vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __getattr__(self, attr: str) -> Any:  # close and the rest: the model's own
        return getattr(self.inner, attr)

    @staticmethod
    def _key(text: str, kind: str = "d") -> str:
        return kind + hashlib.sha1(text.encode()).hexdigest()

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True)
                       if k not in self._vectors}.items())
        if todo:
            vectors = self.inner.encode_documents([t for _, t in todo])
            self._vectors.update((k, v) for (k, _), v in zip(todo, vectors, strict=True))
            self._unsaved += len(todo)
            self.embedded += len(todo)
            if self._unsaved >= SAVE_EVERY:
                self.save()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> DocumentEmbedding:
        """:meth:`encode_documents` as ingest asks for it (reported as costing no tokens
        or CPU: the bench measures ranking, not embedding)."""
        return DocumentEmbedding(self.encode_documents(texts), 0, 0.0)

    def encode_query(self, text: str) -> np.ndarray:
        return self.submit_query(text).result().vector

    def submit_query(self, text: str) -> Future[QueryEmbedding]:
        """The query's vector, from the cache when it was embedded before (reported as
        costing no CPU: the bench measures ranking, not embedding time)."""
        key = self._key(text, "q")
        cached = self._vectors.get(key)
        if cached is None:
            cached = self.inner.submit_query(text).result().vector
            self._vectors[key] = cached
            self._unsaved += 1
            self.embedded += 1
        done: Future[QueryEmbedding] = Future()
        done.set_result(QueryEmbedding(np.asarray(cached, dtype=np.float32), 0, 0.0))
        return done

    def count_tokens(self, texts: Sequence[str]) -> int:
        return self.inner.count_tokens(texts)

    def save(self) -> None:
        """Write the vectors (once something new was embedded)."""
        if not self._unsaved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._vectors)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys),
                 vectors=np.stack([self._vectors[k] for k in keys]).astype(np.float32))
        tmp.replace(self.path)
        self._unsaved = 0
