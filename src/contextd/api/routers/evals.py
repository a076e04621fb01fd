"""Golden sets, eval runs against the live index, and baseline pinning."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from contextd.api.binding import may_act_for
from contextd.api.deps import AnalystKey, RuntimeDep
from contextd.api.quality_schemas import BaselineIn, EvalRunIn, GoldenSetIn
from contextd.api.threads import in_thread
from contextd.core.errors import InvalidInput, NotFound
from contextd.quality import golden
from contextd.quality.evaluation import (
    AlertPolicy,
    EvalConfig,
    get_run,
    list_runs,
    run_golden_set,
    run_json,
)
from contextd.runtime import Runtime
from contextd.state.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["evaluation"])


def viewer_of(runtime: Runtime, key: ApiKey) -> golden.Viewer:
    """The asking key's reach: users it may act for, its sources and kinds."""
    grace = runtime.settings.db_outage_grace_seconds
    return golden.Viewer(
        may_act_for=lambda user: may_act_for(runtime.engine, key, user, outage_grace=grace),
        sources=key.policy.sources, kinds=key.policy.kinds)

MAX_UPLOAD_BYTES = 8 * 1024 * 1024


@router.post("/golden-sets", status_code=201, responses={401: {}, 403: {}, 409: {}, 422: {}})
def create_golden_set(body: GoldenSetIn, runtime: RuntimeDep,
                      key: AnalystKey) -> dict[str, Any]:
    """A golden set from JSON: queries and graded judgments of live-index documents that
    each query's user may see; users, sources and kinds within the key's reach."""
    queries = [golden.GoldenQuery(id=q.id, text=q.text, user_id=q.user_id,
                                  kinds=tuple(q.kinds)) for q in body.queries]
    row = golden.create_golden_set(runtime.engine, name=body.name, queries=queries,
                                   qrels=body.qrels, sources=body.sources,
                                   description=body.description, origin="json",
                                   viewer=viewer_of(runtime, key))
    return golden.golden_set_json(row)


async def _read(upload: UploadFile, field: str) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"{field} exceeds {MAX_UPLOAD_BYTES} bytes",
                           details=[{"field": field}])
    return data


@router.post("/golden-sets/beir", status_code=201,
             responses={401: {}, 403: {}, 409: {}, 413: {}, 422: {}})
async def upload_beir_golden_set(
        runtime: RuntimeDep, key: AnalystKey,
        name: Annotated[str, Form(min_length=1, max_length=200)],
        queries: Annotated[UploadFile, File(description="queries.jsonl")],
        qrels: Annotated[UploadFile, File(description="qrels/<split>.tsv")],
        description: Annotated[str, Form(max_length=2000)] = "",
        sources: Annotated[str, Form(description="comma-separated source names")] = "",
) -> dict[str, Any]:
    """A golden set from a BEIR-layout upload (``queries.jsonl`` + ``qrels`` TSV); corpus
    ids are the ``source_id`` of documents already in the live index."""
    parsed_queries = golden.parse_beir_queries(await _read(queries, "queries"))
    parsed_qrels = golden.parse_beir_qrels(await _read(qrels, "qrels"))
    source_list = [s.strip() for s in sources.split(",") if s.strip()]
    row = await in_thread(golden.create_golden_set, runtime.engine, name=name,
                          queries=parsed_queries, qrels=parsed_qrels, sources=source_list,
                          description=description, origin="beir",
                          viewer=viewer_of(runtime, key))
    return golden.golden_set_json(row)


@router.get("/golden-sets", responses={401: {}, 403: {}})
def list_golden_sets(runtime: RuntimeDep, key: AnalystKey) -> list[dict[str, Any]]:
    viewer = viewer_of(runtime, key)
    return [golden.golden_set_json(r) for r in golden.list_golden_sets(runtime.engine, viewer)]


@router.get("/golden-sets/{ref}", responses={401: {}, 403: {}, 404: {}})
def get_golden_set(ref: str, runtime: RuntimeDep, key: AnalystKey) -> dict[str, Any]:
    row = golden.get_golden_set(runtime.engine, ref, viewer_of(runtime, key))
    return golden.golden_set_json(row, full=True)


@router.put("/golden-sets/{ref}/baseline", responses={401: {}, 403: {}, 404: {}, 422: {}})
def pin_baseline(ref: str, body: BaselineIn, runtime: RuntimeDep,
                 key: AnalystKey) -> dict[str, Any]:
    """Pin one of the set's runs as the baseline later runs are compared with."""
    row = golden.pin_baseline(runtime.engine, golden_set=ref, run_id=body.run_id,
                              viewer=viewer_of(runtime, key))
    return golden.golden_set_json(row)


def _run(runtime: Runtime, body: EvalRunIn, key: ApiKey) -> dict[str, Any]:
    settings = runtime.settings
    if body.config.token_budget > settings.max_token_budget:
        raise InvalidInput(f"token_budget exceeds the limit of {settings.max_token_budget}",
                           details=[{"field": "config.token_budget"}])
    if body.config.top_k > settings.max_top_k:
        raise InvalidInput(f"top_k exceeds the limit of {settings.max_top_k}",
                           details=[{"field": "config.top_k"}])
    viewer = viewer_of(runtime, key)
    row = golden.get_golden_set(runtime.engine, body.golden_set, viewer)
    config = EvalConfig(**body.config.model_dump())
    webhook = settings.quality_webhook_url
    policy = AlertPolicy(threshold=settings.quality_regression_threshold,
                         webhook_url=webhook.get_secret_value() if webhook else None)
    return run_json(run_golden_set(runtime.retriever, runtime.engine, row, config, policy,
                                   viewer), per_query=True)


@router.post("/eval/runs", status_code=201, responses={401: {}, 403: {}, 404: {}, 422: {}})
async def create_eval_run(body: EvalRunIn, runtime: RuntimeDep,
                          key: AnalystKey) -> dict[str, Any]:
    """Run a golden set against the live index (hybrid by default; dense-only, BM25-only
    or freshness off to compare), store it and flag regressions against the baseline."""
    return await in_thread(_run, runtime, body, key)


@router.get("/eval/runs", responses={401: {}, 403: {}, 422: {}})
def list_eval_runs(runtime: RuntimeDep, key: AnalystKey, golden_set: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """Newest first; ``golden_set`` (id or name) narrows to one set. Runs of sets the key
    does not see are left out."""
    viewer = viewer_of(runtime, key)
    set_id = golden.get_golden_set(runtime.engine, golden_set, viewer).id if golden_set \
        else None
    return [run_json(r) for r in list_runs(runtime.engine, golden_set_id=set_id, limit=limit,
                                           viewer=viewer)]


@router.get("/eval/runs/{run_id}", responses={401: {}, 403: {}, 404: {}})
def get_eval_run(run_id: str, runtime: RuntimeDep, key: AnalystKey) -> dict[str, Any]:
    run = get_run(runtime.engine, run_id, viewer_of(runtime, key))
    if run is None:
        raise NotFound(f"eval run {run_id!r} not found")
    return run_json(run, per_query=True)
