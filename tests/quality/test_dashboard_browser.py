"""The dashboard in a real headless Chromium: log in through the form, render the seeded
history with no console errors, and show exactly the numbers the API returns, at desktop
and at phone width (420 px, nothing wider than the screen).

The screenshots are kept in tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from contextd.core.types import utcnow
from contextd.runtime import Runtime
from contextd.state.db import session_scope
from contextd.state.tables import ConnectorRow, QuarantineRow, SyncRunRow
from tests.conftest import LiveServer
from tests.factories import keys
from tests.quality.corpus import QRELS, QUERIES, RECORDS
from tests.quality.seed import seed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"



def ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} ms"


def days(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} d"


def expected_texts(quality: dict[str, Any]) -> dict[str, str]:
    """What each ``data-metric`` element must read, formatted from the API's JSON."""
    v = {name: part["values"] for name, part in quality["metrics"].items()}
    ages = v["freshness"]["item_age_days"]
    latency = v["accessibility"]["latency_ms"]
    texts = {
        "completeness.golden_recall_at_bundle":
            ratio(v["completeness"]["golden_recall_at_bundle"]["value"]),
        "completeness.requested_kinds_covered":
            ratio(v["completeness"]["requested_kinds_covered"]["value"]),
        "accuracy.current_share": ratio(v["accuracy"]["current_share"]["value"]),
        "relevance.ndcg@10": ratio(v["relevance"]["ndcg@10"]["value"]),
        "relevance.mrr": ratio(v["relevance"]["mrr"]["value"]),
        "relevance.used_served_ratio": ratio(v["relevance"]["used_served_ratio"]["value"]),
        "freshness.item_age_days.p50": days(ages["value"]),
        "freshness.item_age_days.p95": days(ages["p95"]),
        "freshness.connector_lag_seconds":
            ratio(v["freshness"]["connector_lag_seconds"]["value"]),
        "accessibility.latency_ms.p50": ms(latency["p50"]),
        "accessibility.latency_ms.p95": ms(latency["p95"]),
        "accessibility.latency_ms.p99": ms(latency["p99"]),
        "accessibility.error_rate": ratio(v["accessibility"]["error_rate"]["value"]),
        "accessibility.found_context_rate":
            ratio(v["accessibility"]["found_context_rate"]["value"]),
    }
    for kind, row in ages["per_kind"].items():
        if kind != "all":
            texts[f"freshness.item_age_days.{kind}.p50"] = days(row["p50"])
    return texts


def seed_partial_run(runtime: Runtime, end: Any) -> None:
    """A connector whose last run was partial, with one record held in quarantine."""
    with session_scope(runtime.engine) as session:
        session.add(ConnectorRow(id="c-tickets", name="tickets", kind="sql",
                                 created_at=end - timedelta(days=3)))
        session.add(SyncRunRow(id="run-tickets-1", connector_id="c-tickets", status="partial",
                               trigger="schedule", quarantined=1,
                               started_at=end - timedelta(hours=2),
                               finished_at=end - timedelta(hours=2)))
        session.add(QuarantineRow(connector_id="c-tickets", source_id="T-17",
                                  error="ValueError: no updated_at",
                                  first_seen_at=end - timedelta(hours=2),
                                  last_seen_at=end - timedelta(hours=2)))


def watch(page: Page) -> list[str]:
    """Console errors and warnings, page errors and failed responses of ``page``."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda resp: problems.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 else None)
    return problems


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def test_dashboard_renders_the_api_numbers_without_console_errors(
        live_server: LiveServer, runtime: Runtime, browser: Browser) -> None:
    end = utcnow().replace(microsecond=0)
    seed(runtime.engine, end=end - timedelta(minutes=1))
    runtime.ingestor.ingest(RECORDS)
    k = keys(runtime.engine)
    with live_server.client(k["analyst"]) as analyst:
        set_id = analyst.post("/v1/golden-sets", json={
            "name": "policies", "queries": [{"id": q, "text": t} for q, t in QUERIES.items()],
            "qrels": QRELS}).json()["id"]
        base = analyst.post("/v1/eval/runs", json={"golden_set": set_id}).json()
        analyst.put(f"/v1/golden-sets/{set_id}/baseline", json={"run_id": base["id"]})
        # A budget too small for any item: every metric falls, a certain regression.
        worse = analyst.post("/v1/eval/runs", json={"golden_set": set_id,
                                                    "config": {"token_budget": 1}}).json()
        assert worse["regressed"]
        seed_partial_run(runtime, end)
        end = utcnow().replace(microsecond=0) + timedelta(seconds=1)  # after the eval runs
        quality = analyst.get("/v1/quality", params={"end": end.isoformat()}).json()
        runs = {run["id"]: run for run in analyst.get("/v1/eval/runs").json()}

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = watch(page)

    page.goto(f"{live_server.base_url}/dashboard?end={end.isoformat().replace('+', '%2B')}")
    assert page.url.startswith(f"{live_server.base_url}/dashboard/login")
    page.fill("#api_key", k["analyst"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    cookie = next(c for c in page.context.cookies() if c["name"] == "contextd_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert k["analyst"] not in cookie["value"]

    page.goto(f"{live_server.base_url}/dashboard?end={end.isoformat().replace('+', '%2B')}")
    assert page.title() == "contextd · context quality"
    shown = {el.get_attribute("data-metric"): el.inner_text().strip()
             for el in page.query_selector_all("#now [data-metric]")}
    expected = expected_texts(quality)
    assert shown == expected
    assert "n/a" not in expected.values()  # the seeded history gives every figure a value
    # the served values are the hand-computed ones of the seeded history
    assert shown["accuracy.current_share"] == "0.571"  # 4 / 7
    assert shown["accessibility.error_rate"] == "0.400"
    # trends, connectors, eval runs vs baseline, slow and empty requests are all there
    assert len(page.query_selector_all("svg.chart")) >= 7
    assert page.query_selector_all("svg.chart polyline")
    assert {r.get_attribute("data-connector")
            for r in page.query_selector_all("#connectors tr[data-connector]")} == {
        "docs", "mail", "crm", "wiki", "tickets"}
    assert "never succeeded" in page.inner_text("#connectors tr[data-connector='wiki']")
    assert "failed" in page.inner_text("#connectors tr[data-connector='crm']")
    regressed = page.query_selector(f"#evals tr[data-run='{worse['id']}']")
    assert regressed is not None and "regression" in regressed.inner_text()
    assert "baseline" in page.inner_text(f"#evals tr[data-run='{base['id']}']")
    # the regression row names each metric that fell, by the API's delta
    compared = runs[worse["id"]]["comparison"]["metrics"]
    fell = {m: v["delta"] for m, v in compared.items() if v["regressed"]}
    assert fell
    named = {el.get_attribute("data-fallen"): el.inner_text()
             for el in regressed.query_selector_all("[data-fallen]")}
    assert set(named) == set(fell)
    for metric, delta in fell.items():
        assert named[metric] == f"{metric} {delta:+.3f}"
    # headline per golden set: its latest run and its baseline, as the API reports them
    card = page.query_selector("#golden [data-golden='policies']")
    assert card is not None
    for metric in ("ndcg@10", "mrr", "recall@bundle"):
        latest = card.query_selector(f"[data-golden-metric='{metric}']")
        pinned = card.query_selector(f"[data-golden-baseline='{metric}']")
        assert latest is not None and pinned is not None
        assert latest.inner_text() == ratio(runs[worse["id"]]["metrics"].get(metric))
        assert pinned.inner_text() == ratio(runs[base["id"]]["metrics"].get(metric))
    # the partial run and the quarantined record are flagged, with a link to them
    tickets = page.query_selector("#connectors tr[data-connector='tickets']")
    assert tickets is not None
    partial = tickets.query_selector("[data-flag='partial']")
    held = tickets.query_selector("[data-flag='quarantined']")
    assert partial is not None and held is not None and held.inner_text() == "1 quarantined"
    with page.expect_navigation():
        held.click()
    assert "T-17" in page.inner_text("#quarantine")
    assert "partial" in page.inner_text("#runs tr[data-run='run-tickets-1']")
    page.go_back()
    slowest = page.query_selector_all("#requests tr[data-bundle]")
    assert slowest and slowest[0].get_attribute("data-bundle") == "B3"  # 900 ms
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    # a request's detail, reachable from the slowest table: query and ranked items
    with page.expect_navigation():
        page.click("#requests tr[data-bundle='B3'] a")
    assert page.query_selector("[data-query]") is not None
    assert page.query_selector_all("#items tr[data-item]")
    page.go_back()

    # phone width: the same numbers, and nothing wider than the screen
    phone = browser.new_page(viewport={"width": 420, "height": 900})
    phone.context.add_cookies(page.context.cookies())
    problems += watch(phone)
    phone.goto(f"{live_server.base_url}/dashboard?end={end.isoformat().replace('+', '%2B')}")
    assert {el.get_attribute("data-metric"): el.inner_text().strip()
            for el in phone.query_selector_all("#now [data-metric]")} == expected
    assert phone.evaluate("document.documentElement.scrollWidth") <= 420
    phone_shot = ARTIFACTS / "dashboard-phone.png"
    phone.screenshot(path=str(phone_shot), full_page=True)
    assert phone_shot.stat().st_size > 10_000

    # a window that ended before the eval runs and the tickets connector shows neither
    before = (end - timedelta(days=5)).isoformat().replace("+", "%2B")
    page.goto(f"{live_server.base_url}/dashboard?end={before}")
    assert not page.query_selector_all("#evals tr[data-run]")
    assert page.query_selector("#connectors tr[data-connector='tickets']") is None
    assert problems == []


def test_bad_dashboard_parameters_give_an_html_page(live_server: LiveServer,
                                                    runtime: Runtime) -> None:
    k = keys(runtime.engine)
    with live_server.client(k["analyst"]) as analyst:
        for query in ("hours=abc", "hours=0", "end=yesterday"):
            resp = analyst.get(f"/dashboard?{query}")
            assert resp.status_code == 400, query
            assert resp.headers["content-type"].startswith("text/html")
            assert "Bad dashboard address" in resp.text and "<html" in resp.text
        assert analyst.get("/dashboard/connectors/nosuch").status_code == 404
        assert analyst.get("/dashboard/requests/nosuch").headers[
            "content-type"].startswith("text/html")
