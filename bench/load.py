"""HTTP load for ``POST /v1/context``: closed loop (N clients, each sends its next request
when the last is answered) and open loop (a fixed rate, whatever the latency).

Plain ``http.client`` on one keep-alive connection per client thread: little client CPU
per request. ``python -m bench.load URL KEY --clients N --requests M`` runs a closed loop
in its own process (so the client's Python does not share the server's interpreter lock)
and prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from bench.timing import percentile


class Client:
    """One keep-alive connection posting context requests."""

    def __init__(self, base_url: str, key: str) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def ask(self, query: str, user_id: str = "ann") -> float:
        """Seconds until the whole response was read; raises on any status but 200.

        A keep-alive connection the server closed while idle is reopened (not timed)."""
        body = json.dumps({"query": query, "user_id": user_id}).encode()
        try:
            started = time.perf_counter()
            self.conn.request("POST", "/v1/context", body=body, headers=self.headers)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()
            started = time.perf_counter()
            self.conn.request("POST", "/v1/context", body=body, headers=self.headers)
            resp = self.conn.getresponse()
        data = resp.read()
        seconds = time.perf_counter() - started
        if resp.status != 200:
            raise RuntimeError(f"/v1/context answered {resp.status}: {data[:200]!r}")
        return seconds

    def close(self) -> None:
        self.conn.close()


def summary(latencies: Sequence[float], seconds: float | None = None) -> dict[str, float]:
    """p50/p95/p99 in ms, and requests per second when ``seconds`` is given."""
    ms = [s * 1000 for s in latencies]
    out = {"requests": len(ms), "p50": round(percentile(ms, 50), 2),
           "p95": round(percentile(ms, 95), 2), "p99": round(percentile(ms, 99), 2)}
    if seconds:
        out["rps"] = round(len(ms) / seconds, 2)
    return out


def closed_loop(base_url: str, key: str, queries: Sequence[str], *, clients: int,
                requests: int) -> dict[str, float]:
    """``clients`` threads share ``requests`` requests; rps over the whole run."""
    latencies: list[float] = []
    lock = threading.Lock()
    next_query = iter(range(requests))

    def client_loop() -> None:
        client = Client(base_url, key)
        try:
            client.ask(queries[0])  # connect before the clock starts for everyone
            barrier.wait()
            while True:
                with lock:
                    n = next(next_query, None)
                if n is None:
                    return
                seconds = client.ask(queries[n % len(queries)])
                with lock:
                    latencies.append(seconds)
        finally:
            client.close()

    barrier = threading.Barrier(clients + 1)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client_loop) for _ in range(clients)]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed)


class OpenLoop:
    """Requests at ``rate`` per second from a background thread until :meth:`stop`."""

    def __init__(self, base_url: str, key: str, queries: Sequence[str], rate: float) -> None:
        self.base_url, self.key, self.queries, self.rate = base_url, key, queries, rate
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._local = threading.local()
        self._clients: list[Client] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> OpenLoop:
        self._stop.clear()
        self.latencies = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return list(self.latencies)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for client in self._clients:
            client.close()

    def _ask(self, query: str) -> None:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Client(self.base_url, self.key)
            self._clients.append(client)
        self.latencies.append(client.ask(query))

    def _run(self) -> None:
        started = time.perf_counter()
        pending: list[Any] = []
        for n in range(10**9):
            due = started + n / self.rate
            while (wait := due - time.perf_counter()) > 0:
                if self._stop.wait(wait):
                    break
            if self._stop.is_set():
                break
            pending.append(self._pool.submit(self._ask, self.queries[n % len(self.queries)]))
        for future in pending:
            future.result()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--queries", type=argparse.FileType(), required=True,
                        help="JSON list of query strings")
    args = parser.parse_args()
    queries = json.load(args.queries)
    print(json.dumps(closed_loop(args.url, args.key, queries, clients=args.clients,
                                 requests=args.requests)))


if __name__ == "__main__":
    main()
