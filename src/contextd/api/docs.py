"""``/docs`` without internet: Swagger UI's script and stylesheet are served by the app from
the installed ``fastapi-offline`` package instead of a CDN, so the page renders on an air-gapped
host. The routes are plain Starlette routes: public, like the schema they render."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS_URL = "/docs/assets"


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_offline_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at ``docs_url`` from local assets (create the app with
    ``docs_url=None`` so FastAPI's CDN page is not registered)."""
    redirect_url = f"{docs_url}/oauth2-redirect"

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API docs",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(ASSETS_URL, StaticFiles(directory=_assets_dir()), name="docs-assets")
    app.router.add_route(docs_url, swagger, methods=["GET"], include_in_schema=False)
    app.router.add_route(redirect_url, oauth2_redirect, methods=["GET"],
                         include_in_schema=False)
