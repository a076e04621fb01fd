"""``/dashboard``: the five metrics now, trends, connectors, eval runs, slow/empty requests."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlmodel import Session

from contextd.api.dashboard import charts, formatting
from contextd.api.dashboard.auth import COOKIE, DASHBOARD_ROLES, Viewer
from contextd.api.dashboard.throttle import LoginThrottle, key_id_of
from contextd.api.deps import RuntimeDep
from contextd.api.proxies import behind_tls, client_address
from contextd.api.threads import in_thread
from contextd.core.errors import AuthenticationFailed, InvalidInput, NotFound
from contextd.core.types import as_utc, utcnow
from contextd.quality.report import dashboard_report
from contextd.runtime import Runtime
from contextd.state import audit, deferred
from contextd.state.keys import authenticate
from contextd.state.sessions import close_session, open_session
from contextd.state.tables import BundleServed

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
templates = Environment(loader=PackageLoader("contextd.api.dashboard", "templates"),
                        autoescape=select_autoescape(["html"]))
templates.globals.update(fmt=formatting, charts=charts, connector_bars=lambda connectors: [
    (c["connector"], c["lag_seconds"], c["within_objective"]) for c in connectors
    if c["lag_seconds"] is not None])

# No inline scripts, no third-party origins: the page is HTML, inline SVG and our CSS.
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def mount_static(app: FastAPI) -> None:
    """The stylesheet (public: it holds no data), served by the app itself."""
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


MAX_HOURS = 24 * 90


def _window(hours: str | None, end: str | None) -> tuple[int, datetime]:
    """The window the query asks for; InvalidInput naming the parameter otherwise."""
    try:
        span_hours = int(hours) if hours not in (None, "") else 24
    except ValueError:
        raise InvalidInput(f"hours must be a whole number of hours, not {hours!r}") from None
    if not 1 <= span_hours <= MAX_HOURS:
        raise InvalidInput(f"hours must be between 1 and {MAX_HOURS}")
    if end in (None, ""):
        return span_hours, utcnow()
    try:
        return span_hours, as_utc(datetime.fromisoformat(str(end).replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(f"end must be an ISO date or date-time, not {end!r}") from None


def _error(status: int, title: str, message: str) -> HTMLResponse:
    return _page("error.html", status=status, title=title, message=message)


@router.get("", response_class=HTMLResponse)
async def dashboard(runtime: RuntimeDep, viewer: Viewer, hours: str | None = None,
                    end: str | None = None) -> Response:
    """The analysts' page (login first when the browser has no session). Bad ``hours`` or
    ``end`` give an HTML page saying what is wrong, since a person is reading."""
    if viewer is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    try:
        span_hours, until = _window(hours, end)
    except InvalidInput as exc:
        return _error(400, "Bad dashboard address", exc.message)
    settings = runtime.settings
    report = await in_thread(dashboard_report, runtime.engine, now=until, hours=span_hours,
                             lag_objective_seconds=settings.quality_lag_objective_seconds)
    return _page("dashboard.html", viewer=viewer, hours=span_hours, **report)


@router.get("/connectors/{connector_id}", response_class=HTMLResponse)
async def connector_page(connector_id: str, runtime: RuntimeDep, viewer: Viewer) -> Response:
    """A connector's runs (partial ones flagged) and its quarantined records."""
    if viewer is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    service = runtime.connectors
    try:
        row = await in_thread(service.get, connector_id)
    except NotFound:
        return _error(404, "No such connector", f"connector {connector_id!r} does not exist")
    runs = await in_thread(service.runs, connector_id, limit=50)
    held = await in_thread(service.quarantine, connector_id, limit=200)
    return _page("connector.html", connector=row, runs=runs, quarantine=held)


@router.get("/requests/{bundle_id}", response_class=HTMLResponse)
async def request_page(bundle_id: str, runtime: RuntimeDep, viewer: Viewer) -> Response:
    """One served bundle: the query (where logging allowed it) and each item's ranking."""
    if viewer is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    bundle = await in_thread(_bundle, runtime, bundle_id)
    if bundle is None:
        return _error(404, "No such request", f"no bundle {bundle_id!r} was recorded")
    return _page("request.html", b=bundle)


def _bundle(runtime: RuntimeDep, bundle_id: str) -> BundleServed | None:
    deferred.flush(runtime.engine)
    with Session(runtime.engine, expire_on_commit=False) as session:
        return session.get(BundleServed, bundle_id)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return _page("login.html")


def _throttle(request: Request, runtime: Runtime) -> LoginThrottle:
    throttle: LoginThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = LoginThrottle(request.app.state.rate_limiter,
                                 runtime.settings.login_attempts_per_minute)
        request.app.state.login_throttle = throttle
    return throttle


def _audit_login(runtime: Runtime, outcome: str, client: str, key_id: str | None,
                 **details: object) -> None:
    audit.record(runtime.engine, action="dashboard.login", outcome=outcome,
                 actor_key_id=key_id or "", target=f"client:{client}", details=details)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, runtime: RuntimeDep,
                api_key: Annotated[str, Form(max_length=300)] = "") -> Response:
    """Exchange an analyst/admin key for a session cookie; the key itself is not kept.
    Attempts are throttled per client and per key id, and audited (see ``throttle``)."""
    trusted = runtime.settings.trusted_proxies
    client = client_address(request, trusted)
    submitted = api_key.strip()
    key_id = key_id_of(submitted)
    throttle = _throttle(request, runtime)
    decision, refused = throttle.attempt(throttle.buckets(client, key_id))
    if not decision.allowed:
        if throttle.first_refusal(refused):
            await in_thread(_audit_login, runtime, "throttled", client, key_id,
                            retry_after=round(decision.retry_after, 3))
        wait = max(1, math.ceil(decision.retry_after))
        page = _page("login.html", status=429,
                     error=f"Too many login attempts; try again in {wait} s.")
        page.headers["Retry-After"] = str(wait)
        return page
    try:
        key = await in_thread(authenticate, runtime.engine, submitted)
    except AuthenticationFailed:
        await in_thread(_audit_login, runtime, "failed", client, key_id,
                        reason="invalid or revoked key")
        return _page("login.html", status=401, error="That key is invalid or revoked.")
    if key.role not in DASHBOARD_ROLES:
        await in_thread(_audit_login, runtime, "forbidden", client, key.id, role=key.role)
        return _page("login.html", status=403,
                     error=f"A {key.role} key cannot open the dashboard; use an analyst key.")
    hours = runtime.settings.dashboard_session_hours
    token = await in_thread(open_session, runtime.engine, key_id=key.id, hours=hours)
    await in_thread(_audit_login, runtime, "ok", client, key.id)
    log.info("dashboard login", extra={"event": "dashboard_login", "key_id": key.id})
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(hours * 3600), path="/dashboard",
                        httponly=True, samesite="strict",
                        secure=behind_tls(request, trusted))
    return response


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep, viewer: Viewer) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await in_thread(close_session, runtime.engine, token)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response
