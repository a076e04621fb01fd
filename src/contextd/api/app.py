"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from contextd import __version__
from contextd.api.bodies import JsonBodyGuardMiddleware
from contextd.api.dashboard import routes as dashboard
from contextd.api.deps import single_valued_query
from contextd.api.docs import install_offline_docs
from contextd.api.errors import install_error_handlers
from contextd.api.mcpmount import install_mcp, run_mcp
from contextd.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from contextd.api.outcomes import ContextOutcomeMiddleware
from contextd.api.ratelimit import make_rate_limiter
from contextd.api.routers import (
    admin,
    audit,
    connector_kinds,
    connectors,
    context,
    costs,
    evals,
    health,
    keys,
    memory,
    metrics,
    principals,
    quality,
    sources,
    store,
)
from contextd.core.logging import configure_logging
from contextd.core.settings import Settings, get_settings
from contextd.core.telemetry import configure_tracing
from contextd.core.tokens import encoding
from contextd.memory.retention import start_purge_scheduler
from contextd.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; pass a ``runtime`` to share one (tests, the demo), else one is made."""
    settings = settings or (runtime.settings if runtime else get_settings())
    owns_runtime = runtime is None
    runtime = runtime or Runtime(settings)
    configure_logging(settings.log_level)
    configure_tracing(otlp_endpoint=settings.otlp_endpoint, console=settings.trace_console)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Open everything now: fail at start, and keep lazy loads off the first request.
        _ = runtime.engine, runtime.store, runtime.dense.encode_query("warm up"), encoding()
        if settings.role != "api":  # an api replica leaves syncs to the workers
            runtime.connectors.start_workers(schedules=settings.scheduler_enabled)
        runtime.consistency.start()  # store vs SQL: readiness and rebuild from the start
        _ = runtime.memory_engine, runtime.memory_store
        # Housekeeping belongs to the processes that run background work, not api replicas.
        scheduler = (start_purge_scheduler(runtime.memory_engine, runtime.memory_store, settings)
                     if settings.role != "api" else None)
        async with run_mcp(app):  # the mounted MCP endpoint's sessions live as long as we do
            yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if owns_runtime:
            runtime.close()
        else:
            runtime.consistency.close()
            if settings.role != "api":
                runtime.connectors.workers.close()

    app = FastAPI(title="contextd", version=__version__, lifespan=lifespan,
                  description="Ranked, freshness-scored, access-scoped context for AI agents.",
                  redoc_url=None, docs_url=None,  # /docs is served offline, below
                  # contextd owns its server spans, metrics and logs (with the rule that query
                  # text is never recorded); FastAPI's automatic telemetry would duplicate them
                  # and log validation errors verbatim, so it stays off.
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  dependencies=[Depends(single_valued_query)])
    app.state.runtime = runtime
    app.state.rate_limiter = make_rate_limiter(settings.redis_url)
    install_error_handlers(app)
    routers: tuple[APIRouter, ...] = (
        health.router, context.router, principals.router, keys.router,
               metrics.router, costs.router, connectors.router, connector_kinds.router,
               quality.router,
               evals.router, dashboard.router, memory.router, audit.router,
               sources.router, admin.router, store.router)
    if settings.role == "worker":  # a worker serves its probes and metrics, no API
        routers = (health.router, metrics.router)
    for router in routers:
        app.include_router(router)
    if settings.role != "worker":
        dashboard.mount_static(app)
        install_offline_docs(app)
        install_mcp(app, runtime)
    document_errors(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, telemetry=settings.telemetry_enabled)
    # Outside every layer that parses a body: deep nesting and lone surrogates are refused
    # before a decoder can recurse on them or a tokenizer choke on them.
    app.add_middleware(JsonBodyGuardMiddleware, max_bytes=settings.max_request_bytes,
                       max_depth=settings.max_json_depth)
    # Outermost, so request outcomes the inner layers answer (413, 401, 5xx) are recorded.
    app.add_middleware(ContextOutcomeMiddleware)
    return app


_ERROR_STATUSES = {400: "Malformed request", 401: "Missing, unknown or revoked API key",
                   403: "The key's role may not call this endpoint", 404: "Not found",
                   409: "Conflict", 413: "Request body over the service's or the key's limit",
                   422: "Invalid field (named in details)",
                   429: "Rate limit of the key exceeded; see Retry-After"}


def document_errors(app: FastAPI) -> None:
    """Declare the error responses every authenticated endpoint can give, with their real
    body (``ErrorOut``), in the OpenAPI schema; FastAPI's default 422 body is not ours."""
    from fastapi.openapi.utils import get_openapi

    from contextd.api.routers.health import PUBLIC_PATHS
    from contextd.api.schemas import ErrorOut

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(ErrorOut.model_json_schema(
            ref_template="#/components/schemas/{model}").pop("$defs", {}))
        components["ErrorOut"] = ErrorOut.model_json_schema(
            ref_template="#/components/schemas/{model}")
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in schema.get("paths", {}).items():
            if path in PUBLIC_PATHS:
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, text in _ERROR_STATUSES.items():
                    responses[str(status)] = {"description": text, "content": error}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every endpoint of ``app``, flattened through included routers (for audits and tests)."""
    found: list[APIRoute] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(list(app.routes))
    return found
