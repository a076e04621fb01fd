"""The dashboard's request page over real HTTP: each served item's ranking explanation is
the one ``explain: true`` returns for the same query, recorded without explain too, and
it holds numbers and ids only (no item text)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys
from tests.quality.corpus import QUERIES, RECORDS

CELL = re.compile(r'<tr data-item="([^"]+)">.*?<td class="query" data-explain>(.*?)</td></tr>',
                  re.S)
LEG = re.compile(r'data-leg="(dense|bm25)" data-rank="(\d*)"')


def request_page(client: httpx.Client, bundle_id: str) -> str:
    """The page, once the bundle (recorded after the reply) is there."""
    deadline = time.monotonic() + 10
    while True:
        resp = client.get(f"/dashboard/requests/{bundle_id}")
        if resp.status_code == 200 or time.monotonic() > deadline:
            assert resp.status_code == 200, resp.text
            return resp.text
        time.sleep(0.05)


def shown_ranks(page: str) -> dict[str, dict[str, int | None]]:
    """Per item id, the dense and BM25 ranks its explanation cell shows."""
    out = {}
    for item_id, cell in CELL.findall(page):
        legs = dict(LEG.findall(cell))
        assert set(legs) == {"dense", "bm25"}, cell
        out[item_id] = {leg: int(rank) if rank else None for leg, rank in legs.items()}
    return out


def test_request_page_shows_the_explain_ranks(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(log_queries=True)
    runtime.ingestor.ingest(RECORDS)
    k = keys(runtime.engine)
    query = QUERIES["q-ticket"]  # an identifier: BM25 and an exact match both play a part
    with LiveServer(runtime) as server, server.client(k["agent"]) as agent, \
            server.client(k["analyst"]) as analyst:
        bodies: list[dict[str, Any]] = []
        for explain in (True, False):
            resp = agent.post("/v1/context", json={"user_id": "alice", "query": query,
                                                   "top_k": 5, "explain": explain})
            assert resp.status_code == 200, resp.text
            bodies.append(resp.json())
        explained, plain = bodies
        assert explained["items"] and plain["items"][0].get("explain") is None
        expected = {i["id"]: {"dense": i["explain"]["dense_rank"],
                              "bm25": i["explain"]["bm25_rank"]}
                    for i in explained["items"]}
        assert any(r["dense"] is not None and r["bm25"] is not None
                   for r in expected.values())
        pages = [request_page(analyst, b["bundle_id"]) for b in bodies]
    for page, body in zip(pages, bodies, strict=True):
        shown = shown_ranks(page)
        assert list(shown) == [i["id"] for i in body["items"]]  # in rank order
        assert shown == {i: expected[i] for i in shown}
        assert query in page  # logging allowed it
    top = explained["items"][0]
    cell = dict(CELL.findall(pages[1]))[top["id"]]
    why = top["explain"]
    assert f"fused {why['fused']:.3f}" in cell
    assert f"freshness {why['freshness_factor']:.3f} ({why['freshness_clock']} clock)" in cell
    assert ("exact match" in cell) == bool(why["exact_matches"])
    # numbers and ids only: no item text reaches the analyst's page
    for item in plain["items"]:
        assert item["text"][:40] not in pages[1]
