"""Document embedding in a child process at a lower CPU priority.

A sync embeds thousands of chunks; a query embeds one short text. On the server's own
model thread a query waits behind whatever document job is running, and the ingest
thread's Python competes with request threads for the interpreter lock. So documents are
embedded by a child process (``python -m contextd.core.document_process``: its own
interpreter and torch thread team, and none of the parent's ``__main__``) that lowers its
own scheduling priority (``os.nice``): when a request needs the CPU the kernel
gives it the core and the child takes what is left, and when no request runs the child
has the whole machine. Queries are embedded by a second child of the same program at the
parent's priority (``core.query_process``); the parent's model thread keeps token counting
(see ``core.model_owner``).

The child loads the same model files and runs :func:`forward`, the code the parent's
query lane runs, so a text's vector is the same whichever side embeds it. A child that
dies is started again and the batch sent once more; a child that cannot start or dies
twice fails the batch with :class:`Unavailable` (a sync then fails with that message).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from contextd.core.errors import Unavailable

log = logging.getLogger(__name__)


def load_model(path: Path | str, threads: int | None = None) -> Any:
    """The sentence-transformers model at ``path`` on the CPU, in eval mode."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    return SentenceTransformer(str(path), device="cpu").eval()


def forward(model: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (float32) and per-text model tokens: one padded batch through the
    model, as ``encode(normalize_embeddings=True)`` computes them."""
    import torch

    with torch.inference_mode():
        features = model.preprocess(list(texts))
        for module in model:
            features = module(features)
        # unit length even for a model without its own Normalize module
        vectors = torch.nn.functional.normalize(features["sentence_embedding"], dim=1)
        tokens = features["attention_mask"].sum(dim=1)
    return vectors.float().numpy(), tokens.numpy()


def length_groups(texts: Sequence[str], chunks: int, chars: int) -> list[list[int]]:
    """Row numbers of ``texts`` per forward pass: texts of similar length together (less
    padding), at most ``chunks`` of them and, past the first, at most ``chars``
    characters."""
    groups: list[list[int]] = []
    size = 0
    for i in sorted(range(len(texts)), key=lambda i: len(texts[i])):
        if not groups or len(groups[-1]) >= chunks or size + len(texts[i]) > chars:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(texts[i])
    return groups


def _child(path: str, threads: int | None, nice: int, conn: Connection) -> None:
    """The child's whole life: load, say ``ready``, embed batches until told to stop."""
    try:
        if nice:
            os.nice(nice)
        model = load_model(path, threads)
        conn.send(("ready", int(model.get_embedding_dimension())))
    except Exception as exc:  # the parent reports it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    dim = int(model.get_embedding_dimension())
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        texts, groups = message
        reply: tuple[Any, ...]
        try:
            cpu_started = time.process_time()
            vectors = np.empty((len(texts), dim), dtype=np.float32)
            tokens = np.empty(len(texts), dtype=np.int64)
            for rows in groups:
                vectors[rows], tokens[rows] = forward(model, [texts[i] for i in rows])
            reply = ("ok", vectors, tokens, time.process_time() - cpu_started)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return


def _child_env() -> dict[str, str]:
    """This environment, with this process's copy of contextd first on the path."""
    import contextd

    here = str(Path(contextd.__file__).resolve().parents[1])
    paths = [here, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


class _ChildDied(Exception):
    pass


class DocumentProcess:
    """The parent's handle on the child: :meth:`encode` sends a batch and waits for its
    vectors. One batch at a time (the child embeds one at a time anyway); the child is
    started on first use.

    No query waits for the child, so its forward passes are as large as throughput wants:
    ``group_chunks`` texts of similar length, at most ``group_chars`` characters (about
    4,000 tokens, which bounds the attention tensors). On 240 bench chunks that took half
    the CPU time of passes capped at 2,000 characters (the in-process job size)."""

    def __init__(self, model_path: Path, *, threads: int | None = None, nice: int = 10,
                 group_chunks: int = 32, group_chars: int = 16_000,
                 start_timeout: float = 300.0, batch_timeout: float = 1800.0,
                 role: str = "document") -> None:
        self.model_path = model_path
        self.role = role  # in messages: "the document embedding process"
        self.threads = threads
        self.nice = nice
        self.group_chunks = group_chunks
        self.group_chars = group_chars
        self.start_timeout = start_timeout
        self.batch_timeout = batch_timeout
        self.starts = 0  # children started, restarts included
        self.batches = 0  # batches sent to a child
        self.busy = False  # a batch is being embedded
        self.dim: int | None = None  # the model's, as the child reported it
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> int:
        """Start the child unless it runs; the model's dimension."""
        with self._lock:
            self._started()
        assert self.dim is not None
        return self.dim

    def encode(self, texts: Sequence[str], groups: list[list[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray, float]:
        """Unit vectors (float32, input order) and model tokens of ``texts``, and the CPU
        seconds the child spent on them. ``groups``: the row numbers of each forward
        pass; unset: :func:`length_groups`."""
        texts = list(texts)
        if groups is None:
            groups = length_groups(texts, self.group_chunks, self.group_chars)
        with self._lock:
            for attempt in (1, 2):
                try:
                    self.busy = True
                    return self._exchange(texts, groups)
                except _ChildDied as exc:
                    self._stop()
                    if attempt == 2:
                        raise Unavailable(
                            f"the {self.role} embedding process died twice ({exc})") from None
                    log.warning("%s embedding process died (%s); starting it again",
                                self.role, exc, extra={"event": "embedding_process_restart"})
                finally:
                    self.busy = False
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=10)
            self._stop()

    def _exchange(self, texts: list[str], groups: list[list[int]]
                  ) -> tuple[np.ndarray, np.ndarray, float]:
        conn = self._started()
        try:
            conn.send((texts, groups))
            self.batches += 1
        except OSError as exc:
            raise _ChildDied(f"send failed: {exc}") from None
        reply = self._receive(conn, self.batch_timeout, "embedding a batch")
        if reply[0] == "error":
            raise RuntimeError(f"{self.role} embedding failed: {reply[1]}")
        return reply[1], reply[2], reply[3]

    def _started(self) -> Connection:
        if self._closed:
            raise Unavailable(f"the {self.role} embedding process is closed")
        if self._conn is not None and self._process.poll() is None:
            return self._conn
        self._stop()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "contextd.core.document_process", str(theirs.fileno()),
                 str(self.model_path), str(self.threads or 0), str(self.nice)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=_child_env())
            # the child holds its end: the parent sees EOF when the child dies
            self._process, self._conn = process, Connection(os.dup(ours.fileno()))
        parent = self._conn
        self.starts += 1
        try:
            reply = self._receive(parent, self.start_timeout, "starting")
        except _ChildDied as exc:
            self._stop()
            raise Unavailable(
                f"the {self.role} embedding process did not start ({exc})") from None
        if reply[0] != "ready":
            self._stop()
            raise Unavailable(f"the {self.role} embedding process did not start: {reply[1]}")
        self.dim = int(reply[1])
        return parent

    def _receive(self, conn: Connection, timeout: float, doing: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if conn.poll(1.0):
                    return conn.recv()
            except (EOFError, OSError):
                raise _ChildDied(f"exit code {self._exitcode()} while {doing}") from None
            if self._process.poll() is not None:
                raise _ChildDied(f"exit code {self._exitcode()} while {doing}")
            if time.monotonic() > deadline:
                raise _ChildDied(f"no answer in {timeout:g} s while {doing}")

    def _exitcode(self) -> int | None:
        try:
            return self._process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    def _stop(self) -> None:
        """Kill the child, if any, and forget it."""
        if self._conn is not None:
            self._conn.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process, self._conn = None, None


if __name__ == "__main__":
    _fd, _path, _threads, _nice = sys.argv[1:5]
    _child(_path, int(_threads) or None, int(_nice), Connection(int(_fd)))
