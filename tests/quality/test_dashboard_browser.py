"""The dashboard in a real headless Chromium: log in through the form, render the seeded
history with no console errors, and show exactly the numbers the API returns.

The screenshot is kept in tests/artifacts/dashboard.png (gitignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from contextd.core.types import utcnow
from contextd.runtime import Runtime
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
        worse = analyst.post("/v1/eval/runs", json={"golden_set": set_id,
                                                    "config": {"freshness": False}}).json()
        assert worse["regressed"]
        quality = analyst.get("/v1/quality", params={"end": end.isoformat()}).json()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda resp: problems.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 else None)

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
        "docs", "mail", "crm", "wiki"}
    assert "never succeeded" in page.inner_text("#connectors tr[data-connector='wiki']")
    assert "failed" in page.inner_text("#connectors tr[data-connector='crm']")
    regressed = page.query_selector(f"#evals tr[data-run='{worse['id']}']")
    assert regressed is not None and "regression" in regressed.inner_text()
    assert "baseline" in page.inner_text(f"#evals tr[data-run='{base['id']}']")
    slowest = page.query_selector_all("#requests tr[data-bundle]")
    assert slowest and slowest[0].get_attribute("data-bundle") == "B3"  # 900 ms
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert problems == []
