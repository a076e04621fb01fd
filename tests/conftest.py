"""Shared fixtures: the real MiniLM encoder (loaded once), runtimes on temporary dirs,
and a live HTTP server running the app on a loopback port."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Connector schedules fire only in the tests that turn them on (issue 3).
os.environ.setdefault("CONTEXTD_SCHEDULER_ENABLED", "false")

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture(scope="session")
def encoder() -> Iterator[SentenceTransformerEncoder]:
    """The real all-MiniLM-L6-v2 from the bundled package, shared by every test. Its
    document process keeps the tests' priority: the suite shares its machine with other
    work, and a lowered one is tested on its own (tests/unit/test_embedder.py)."""
    enc = SentenceTransformerEncoder(document_nice=0)
    _ = enc.dim
    yield enc
    enc.close()  # its query and document processes end with it


@pytest.fixture
def make_runtime(tmp_path: Path, encoder: SentenceTransformerEncoder
                 ) -> Iterator[Callable[..., Runtime]]:
    """Build runtimes on fresh temporary data dirs; all closed at teardown."""
    made: list[Runtime] = []

    def build(store: str = "edge", **overrides: object) -> Runtime:
        data_dir = tmp_path / f"data{len(made)}"
        settings = Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]
        runtime = Runtime(settings, dense_encoder=encoder)
        runtime.migrate()
        if store == "server":
            from qdrant_client import QdrantClient

            from contextd.core.server_store import ServerStore

            runtime._store = ServerStore(QdrantClient(":memory:"), "test", encoder.dim)
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        runtime.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """The app served by uvicorn on a loopback port in a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        import uvicorn

        from contextd.api.app import create_app

        self.runtime = runtime
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    with LiveServer(runtime) as server:
        yield server
