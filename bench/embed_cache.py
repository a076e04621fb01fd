"""A dense encoder that remembers document vectors on disk, keyed by model and text.

The quality bench runs every mode (dense, BM25, hybrid; freshness on and off) over the same
corpora: the documents are embedded once, and a rerun of the bench reuses the vectors
(``bench/.cache``), so only the queries run the model again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contextd.core.embedder import DenseEncoder


class CachedEncoder:
    """``inner`` with ``encode_documents`` served from ``directory/<model>.npz`` when it can."""

    def __init__(self, inner: DenseEncoder, directory: Path) -> None:
        self.inner = inner
        self.path = Path(directory) / f"{inner.name.replace('/', '_')}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.is_file():
            with np.load(self.path) as data:
                self._vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __getattr__(self, attr: str) -> Any:  # submit_query and the rest: the model's own
        return getattr(self.inner, attr)

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True)
                       if k not in self._vectors}.items())
        if todo:
            vectors = self.inner.encode_documents([t for _, t in todo])
            self._vectors.update((k, v) for (k, _), v in zip(todo, vectors, strict=True))
            self._dirty = True
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.inner.encode_query(text)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return self.inner.count_tokens(texts)

    def save(self) -> None:
        """Write the vectors (once something new was embedded)."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._vectors)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys),
                 vectors=np.stack([self._vectors[k] for k in keys]).astype(np.float32))
        tmp.replace(self.path)
        self._dirty = False
