"""Request and response bodies of the v1 API (pydantic; validation errors become 422)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

KindName = Literal["document", "email", "crm"]
Ident = Field(min_length=1, max_length=200, pattern=r"^[^\s:]+$")
BOUND_USER = ("The user the request acts for. A key bound to users may act only for them "
              "(any other is a 403); a key bound to exactly one user may leave it out.")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Bounded so the engine's decay scale (seconds, float32) stays a positive number.
HalfLifeDays = Annotated[float, Field(ge=0.001, le=36500, allow_inf_nan=False)]


class FreshnessIn(Strict):
    half_life_days: dict[KindName, HalfLifeDays] = Field(default_factory=dict)
    enabled: bool = True


class ContextRequestIn(Strict):
    query: str = Field(min_length=1, description="What the agent needs context for.")
    user_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^\s:]+$",
                                description=BOUND_USER)
    token_budget: int = Field(2000, ge=1)
    top_k: int = Field(20, ge=1)
    kinds: list[KindName] | None = Field(None, min_length=1)
    sources: list[str] | None = Field(None, min_length=1)
    freshness: FreshnessIn | None = None
    include_memory: bool = True
    session_id: str | None = Field(None, min_length=1, max_length=200)
    as_of: AwareDatetime | None = Field(
        None, description="Point in time: documents as they were then (the versions current "
        "at that instant, nothing written later) and entity facts valid then (default: now).")
    fact_history: bool = Field(False, description="Add each fact's earlier values.")
    min_relevance: float | None = Field(
        None, ge=0.0, le=1.0, description="Serve only items whose calibrated relevance "
        "reaches this; none reaching it makes found=false (default: the min_relevance "
        "setting).")
    explain: bool = Field(False, description="Add to each item why it ranks there (leg "
                          "ranks and scores, matched terms, freshness and its clock, "
                          "supersession, de-duplication, budget) and list what was dropped.")


class ExplainOut(BaseModel):
    dense_rank: int | None = Field(description="1-based rank in the dense leg, None if "
                                   "outside it.")
    dense_score: float = Field(description="Dense cosine of query and chunk.")
    bm25_rank: int | None
    bm25_score: float
    feedback_score: float | None = Field(None, description=(
        "Cosine to the query expanded with the leading candidates' vectors (pseudo-relevance "
        "feedback; None when it did not run), used in place of dense_score in fused."))
    fused: float = Field(description="Fused relevance score before freshness.")
    coverage: float = Field(description="Share of the query's content words the item holds.")
    relevance: float = Field(description="Calibrated relevance (from the cosine and the "
                             "coverage; 0.99 and up for an exact match).")
    exact_matches: list[str] = Field(description="Identifiers, quoted phrases or the "
                                     "title of the query this item holds exactly.")
    matched_terms: list[str] = Field(default_factory=list,
                                     description="Query words the item's BM25 terms hold.")
    freshness_factor: float
    freshness_clock: str
    superseded_by: str | None
    notes: list[str] = Field(description="What supersession, de-duplication and the token "
                             "budget did to this item.")


class DroppedOut(BaseModel):
    id: str
    source: str | None
    source_id: str | None
    title: str
    relevance: float
    score: float
    reason: str


class WarningOut(BaseModel):
    code: Literal["leg_not_run", "memory_unavailable", "source_stale"]
    message: str


class ItemOut(BaseModel):
    id: str
    kind: str
    source: str
    source_id: str
    title: str
    uri: str
    text: str
    updated_at: str
    score: float
    relevance: float
    freshness: float
    citation: str
    entity_key: str
    doc_version: int
    superseded: bool
    tokens: int
    updated_at_source: str = Field(description="The clock updated_at came from: "
                                   "front_matter, pdf_metadata, docx_core, html_meta, "
                                   "email_date, crm_updated_at, column, mtime (last resort).")
    superseded_by: str | None = Field(description="source_id of the current version, when "
                                      "this item is an older version of it.")
    explain: ExplainOut | None = None


class MemoryOut(BaseModel):
    interaction_id: str
    query: str
    summary: str
    created_at: str
    score: float
    relevance: float
    session_id: str | None
    same_session: bool
    outcome: str | None
    tokens: int


class FactValueOut(BaseModel):
    value: Any
    valid_from: str
    valid_to: str | None
    version: int


class FactOut(FactValueOut):
    entity: str
    attribute: str
    source: str
    source_id: str
    tokens: int
    history: list[FactValueOut] | None = None


class CostOut(BaseModel):
    embed_tokens: int
    embed_cpu_seconds: float


class StatsOut(BaseModel):
    latency_ms: float
    stages_ms: dict[str, float]
    candidates: int
    cost: CostOut


class ContextResponse(BaseModel):
    bundle_id: str
    query: str
    user_id: str
    generated_at: datetime
    items: list[ItemOut]
    memory: list[MemoryOut]
    facts: list[FactOut]
    memory_status: Literal["ok", "unavailable", "disabled"] = Field(
        description="ok: memory consulted; unavailable: memory could not be read, so the "
                    "bundle holds items only; disabled: include_memory was false.")
    token_count: int
    truncated: bool
    stats: StatsOut
    found: bool = Field(description="Whether any item reached min_relevance: false tells "
                        "the agent that the answer is probably not in what the user can "
                        "see (escalate instead of guessing).")
    found_reason: str
    warnings: list[WarningOut] = Field(description="What degraded this bundle: a retrieval "
                                       "leg that did not run, a source past its freshness "
                                       "objective, memory that could not be read.")
    dropped: list[DroppedOut] | None = Field(None, description="With explain: candidates "
                                             "left out and why.")


class PrincipalIn(Strict):
    groups: list[str] = Field(max_length=1000)


class PrincipalOut(BaseModel):
    user_id: str
    groups: list[str]
    principals: list[str]


SourceName = Annotated[str, Field(min_length=1, max_length=200)]


class GroupParentsIn(Strict):
    parents: list[str] = Field(max_length=1000)


class GroupParentsOut(BaseModel):
    group_id: str
    parents: list[str]


class UserEntryOut(BaseModel):
    user_id: str
    groups: list[str] = Field(description="Direct groups (nesting adds more; see GET "
                                          "/v1/principals/{user_id}).")


class PrincipalsPageOut(BaseModel):
    principals: list[UserEntryOut]
    next_after: str | None = Field(
        description="Pass as ``after`` for the next page; null on the last page.")


class GroupEntryOut(BaseModel):
    group_id: str
    members: list[str] = Field(description="Direct members: user:<id> and group:<id>.")
    parents: list[str] = Field(description="Groups this group belongs to.")


class GroupsPageOut(BaseModel):
    groups: list[GroupEntryOut]
    next_after: str | None = Field(
        description="Pass as ``after`` for the next page; null on the last page.")


class KeyPolicyIn(Strict):
    """A key's binding (None: unbound), scope (None: not narrowed) and limits (None: the
    service defaults)."""

    user_ids: list[Annotated[str, Ident]] | None = Field(
        None, min_length=1, max_length=1000, description=(
            "Bind the key to these users: it acts only for them (any other user_id is a "
            "403); with exactly one user and no group, user_id may be left out."))
    group: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[^\s:]+$", description=(
            "Bind the key to the members of this group (nested groups count), read from "
            "the principals directory on every request."))
    sources: list[SourceName] | None = Field(None, max_length=1000, description=(
        "Sources (connector names) this key may read; intersected with every request."))
    kinds: list[KindName] | None = Field(None, description="Kinds this key may read.")
    rate_per_minute: int | None = Field(None, ge=1, le=1_000_000, strict=True)
    burst: int | None = Field(None, ge=1, le=100_000, strict=True)
    max_token_budget: int | None = Field(None, ge=1, le=10_000_000, strict=True)
    max_top_k: int | None = Field(None, ge=1, le=100_000, strict=True)
    max_request_bytes: int | None = Field(None, ge=1, le=1 << 30, strict=True)


class KeyCreateIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "agent", "analyst"]
    policy: KeyPolicyIn | None = None


class KeyPolicyOut(BaseModel):
    user_ids: list[str] | None
    group: str | None
    sources: list[str] | None
    kinds: list[str] | None
    rate_per_minute: int | None
    burst: int | None
    max_token_budget: int | None
    max_top_k: int | None
    max_request_bytes: int | None


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    bound: bool = Field(description="True when the key acts only for the users its policy "
                                    "names (user_ids, group).")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    policy: KeyPolicyOut


class KeyCreatedOut(KeyOut):
    key: str = Field(description="The full key. Shown once; only its hash is stored.")


class KeyRotatedOut(KeyCreatedOut):
    previous_valid_until: datetime = Field(
        description="Until when the previous secret still authenticates (the grace period).")


class GroupsImportIn(Strict):
    """A membership export (CSV or LDIF text) that replaces everything ``origin`` set before."""

    format: Literal["csv", "ldif"]
    content: str = Field(min_length=1, max_length=4_000_000)
    origin: str = Field("import", min_length=1, max_length=200, pattern=r"^[^\s]+$")


class GroupsImportOut(BaseModel):
    origin: str
    memberships: int
    added: int
    removed: int


class AuditEventOut(BaseModel):
    id: int
    created_at: datetime
    action: str
    outcome: str
    actor_key_id: str
    actor: str
    user_id: str | None
    target: str | None
    query_hash: str | None
    query: str | None
    item_ids: list[str]
    latency_ms: float | None
    redactions: int
    details: dict[str, Any]


class AuditPageOut(BaseModel):
    events: list[AuditEventOut]
    next_before_id: int | None = Field(
        description="Pass as ``before_id`` for the next (older) page; null on the last page.")


class FieldProblem(BaseModel):
    """One problem of an error: the field it concerns (dotted path; empty when none) and
    what is wrong with it. Some errors add keys (``unknown_ids``, ``retry_after``)."""

    model_config = ConfigDict(extra="allow")

    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[FieldProblem] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


# --- interactions, feedback, forgetting --------------------------------------------------

EntityKey = Field(min_length=3, max_length=300, pattern=r"^[^\s:]+:\S+$")


class InteractionIn(Strict):
    user_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^\s:]+$",
                                description=BOUND_USER)
    query: str = Field(min_length=1, description="What the user asked.")
    summary: str = Field("", description="A summary of the response given.")
    session_id: str | None = Field(None, min_length=1, max_length=200)
    bundle_id: str | None = Field(None, min_length=1, max_length=64)
    outcome: str | None = Field(None, min_length=1, max_length=50,
                                description="e.g. resolved, escalated, abandoned")
    entities: list[Annotated[str, EntityKey]] = Field(
        default_factory=list, max_length=100,
        description="Entity keys the interaction was about, e.g. deal:D-101.")
    created_at: AwareDatetime | None = Field(
        None, description="When it happened (backfill); default now, never in the future.")


class InteractionOut(BaseModel):
    id: str
    user_id: str
    agent: str
    session_id: str | None
    query: str
    summary: str
    bundle_id: str | None
    outcome: str | None
    entities: list[str]
    created_at: datetime
    sources: list[str] | None = Field(description=(
        "The sources of the key (and bundle) that recorded it; null: not narrowed. Only "
        "readers whose own scope covers them see the interaction."))
    kinds: list[str] | None = Field(description="The kinds likewise; null: not narrowed.")


class InteractionPageOut(BaseModel):
    items: list[InteractionOut]
    next_cursor: str | None


class FeedbackIn(Strict):
    bundle_id: str = Field(min_length=1, max_length=64)
    rating: int = Field(ge=1, le=5, description="1 (useless) to 5 (exactly what was needed).")
    used_item_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=1000)
    comment: str | None = Field(None, max_length=4000)
    interaction_id: str | None = Field(None, min_length=1, max_length=36)


class FeedbackOut(BaseModel):
    id: str
    bundle_id: str
    user_id: str
    rating: int
    used_item_ids: list[str]
    comment: str | None
    interaction_id: str | None
    created_at: datetime


class ForgottenOut(BaseModel):
    user_id: str
    interactions: int
    vectors: int
    feedback: int
    bundles: int
