"""Request bodies of the quality endpoints (golden sets, eval runs, baselines)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GoldenQueryIn(_Strict):
    id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)
    user_id: str = Field("eval", min_length=1, max_length=200,
                         description="whose access scope the query runs with")
    kinds: list[Literal["document", "email", "crm"]] = Field(default_factory=list)


class GoldenSetIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    sources: list[str] = Field(default_factory=list, max_length=100,
                               description="limit runs (and judged ids) to these sources")
    queries: list[GoldenQueryIn] = Field(min_length=1)
    qrels: dict[str, dict[str, int]] = Field(
        description="query id -> {document source_id: grade}; grade > 0 is relevant")


class EvalConfigIn(_Strict):
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    freshness: bool = True
    token_budget: int = Field(2000, ge=1)
    top_k: int = Field(20, ge=1)


class EvalRunIn(_Strict):
    golden_set: str = Field(min_length=1, max_length=200, description="golden set id or name")
    config: EvalConfigIn = Field(default_factory=EvalConfigIn)


class BaselineIn(_Strict):
    run_id: str = Field(min_length=1, max_length=32)
