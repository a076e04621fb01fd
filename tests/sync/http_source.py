"""A small HTTP source of our own, to test the runner's failure handling end to end.

The server is real (``http.server`` on a loopback port) and speaks a paged JSON API:
``GET /items?page=N`` -> ``{"items": [{"id", "text", "updated_at"}], "next": N+1 | null}``
with a Bearer token. A script of failures (status + headers) is served before the real
answers, like a rate-limited or overloaded SaaS API. The connector maps 429/5xx to
TransientSourceError (carrying ``Retry-After``) and 401/403 to SourceAuthError, the
contract connectors follow.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import httpx
from pydantic import SecretStr

from contextd.connectors.base import ConnectorConfig, error_text, to_utc
from contextd.core.errors import SourceAuthError, TransientSourceError
from contextd.core.types import Batch, RecordFailure, SourceRecord


class ItemsServer:
    """The fake source: items in pages of ``page_size``, failures served first."""

    def __init__(self, items: list[dict[str, Any]], *, token: str = "s3cret-token",
                 page_size: int = 3) -> None:
        self.items = items
        self.token = token
        self.page_size = page_size
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[str, int]] = []
        self.delay = 0.0  # seconds before each answer, to make a run slow
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                time.sleep(server.delay)
                status, headers, body = server.answer(self.path, self.headers)
                server.requests.append((self.path, status))
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"message": "invalid token"}
        if self.failures:
            status, extra = self.failures.pop(0)
            return status, extra, {"message": "try later"}
        page = int(parse_qs(urlparse(path).query).get("page", ["0"])[0])
        start = page * self.page_size
        chunk = self.items[start:start + self.page_size]
        more = start + self.page_size < len(self.items)
        return 200, {}, {"items": chunk, "next": page + 1 if more else None}

    def __enter__(self) -> ItemsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ItemsConfig(ConnectorConfig):
    base_url: str
    token: SecretStr


class ItemsConnector:
    """Pages of items; the cursor is the next page, checkpointed after every page."""

    kind: ClassVar[str] = "test_items"
    Config: ClassVar[type[ItemsConfig]] = ItemsConfig

    def __init__(self, name: str, config: ItemsConfig) -> None:
        self.name = name
        self.config = config
        self.client = httpx.Client(base_url=config.base_url, timeout=5, headers={
            "Authorization": f"Bearer {config.token.get_secret_value()}"})

    def close(self) -> None:
        self.client.close()

    def _get(self, page: int) -> dict[str, Any]:
        resp = self.client.get("/items", params={"page": page})
        if resp.status_code in (401, 403):
            raise SourceAuthError(f"{self.name}: credentials rejected (HTTP {resp.status_code})")
        if resp.status_code == 429 or resp.status_code >= 500:
            exc = TransientSourceError(f"{self.name}: HTTP {resp.status_code}")
            exc.retry_after = float(resp.headers.get("Retry-After", 0))  # type: ignore[attr-defined]
            raise exc
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def check(self) -> None:
        self._get(0)

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        page: int | None = int((cursor or {}).get("page", 0))
        while page is not None:
            body = self._get(page)
            records, failures = [], []
            for item in body["items"]:
                try:
                    records.append(SourceRecord(
                        source=self.name, source_id=str(item["id"]), kind="document",
                        title=f"Item {item['id']}", text=item["text"],
                        updated_at=to_utc(item["updated_at"]), acl=("public",)))
                except Exception as exc:
                    failures.append(RecordFailure(self.name, str(item.get("id")),
                                                  error_text(exc), json.dumps(item)))
            page = body["next"]
            # A full pass ends with the cursor back at page 0, so the next run re-reads
            # everything (unchanged items are skipped by hash).
            yield Batch(records=records, failures=failures,
                        cursor={"page": page if page is not None else 0})

    def list_ids(self) -> set[str]:
        return {str(i["id"]) for i in self.items_at_source()}

    def items_at_source(self) -> list[dict[str, Any]]:
        found, page = [], 0
        while True:
            body = self._get(page)
            found += body["items"]
            if body["next"] is None:
                return found
            page = body["next"]
