"""/docs renders in headless Chromium with every request outside the service blocked:
Swagger UI's assets come from the installed package, not a CDN.

The screenshot is kept in tests/artifacts/docs.png (gitignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.conftest import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_docs_render_without_internet(live_server: LiveServer) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required: apt-get install -y chromium (see .ci/run)")
    blocked: list[str] = []

    def offline(route: Route) -> None:
        if urlparse(route.request.url).netloc == f"127.0.0.1:{live_server.port}":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server.base_url}/docs", wait_until="networkidle")
            page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/v1/context" in paths and "/v1/sources" in paths
            assert page.locator(".swagger-ui .info .title").inner_text().startswith("contextd")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
        finally:
            browser.close()
    assert blocked == [], f"/docs reached outside the service: {blocked}"
    assert errors == []
