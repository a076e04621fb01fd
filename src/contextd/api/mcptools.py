"""contextd's MCP tools: thin clients of its own HTTP API.

Every tool makes one request of the ``/v1`` API with the caller's own key (the bearer the
MCP request carried, or ``CONTEXTD_API_KEY`` over stdio), so authentication, the key's
policy and user binding, the ACL filter inside the engine, audit and rate limits are
exactly those of the HTTP routes; nothing is re-implemented here. Inside the service,
get_context's request is served by the route's own code without an HTTP round trip (see
``mcpmount``). A refused or invalid request comes back as a tool error (``isError``) whose
text is the service's JSON error, which names the field and, for filters, the valid values.
"""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from contextd import __version__
from contextd.api.schemas import ContextResponse, FeedbackOut, InteractionOut
from contextd.api.source_schemas import DocumentOut, SourcesOut
from contextd.client import calls
from contextd.client.calls import Call
from contextd.client.transport import AsyncClient

INSTRUCTIONS = (
    "contextd serves ranked, access-scoped context about the user's company data (documents, "
    "email, CRM) and remembers past interactions. Call get_context before answering a "
    "question that needs company knowledge; cite items by their citation; call read_source "
    "with an item's ref when a passage is not enough; call list_sources to see what exists "
    "and how fresh it is; after answering, record_interaction and give_feedback.")

# Forwarded from the MCP request to the API request (the caller's identity, nothing else).
FORWARDED = ("authorization",)

UserId = Annotated[str | None, Field(
    None, min_length=1, max_length=200, pattern=r"^[^\s:]+$",
    description="The end user the agent acts for; their access rights apply. May be "
                "omitted when the API key is bound to one user.")]
Kind = Literal["document", "email", "crm"]

# Serves one API call in this process: (HTTP status, JSON body), or None to send it.
LocalCall = Callable[[Context, Call[Any]], Awaitable[tuple[int, Any] | None]]

_REF = re.compile(r"\(([^()\s,]+:[^()\s,]+),\s*updated [^()]*\)\s*$")


def tool_error(status: int, body: Any) -> CallToolResult:
    """The service's error as a result the model reads and can act on."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = error.get("message") or str(body)
    text = f"Error {status} ({error.get('code', 'error')}): {message}"
    if error.get("details"):
        text += f"\ndetails: {json.dumps(error['details'], default=str)}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def parse_ref(citation: str) -> tuple[str, str] | None:
    """``source:source_id`` from an item's ref, or from a served citation whose location is
    that form (``Title (source:id, updated 2026-01-01)``)."""
    text = citation.strip()
    match = _REF.search(text)
    if match:
        text = match.group(1)
    source, sep, source_id = text.partition(":")
    if not sep or not source or not source_id or "://" in text or " " in source:
        return None
    return source, source_id


def bundle_text(bundle: dict[str, Any]) -> str:
    """The bundle as an LLM reads it best: numbered items with their citation and ref,
    then memory, facts, and whether anything relevant was found."""
    lines = [f"bundle_id: {bundle.get('bundle_id')}"]
    if "found" in bundle:
        lines.append(f"found: {str(bundle['found']).lower()}")
    for warning in bundle.get("warnings") or []:
        lines.append(f"warning: {warning if isinstance(warning, str) else json.dumps(warning)}")
    items = bundle.get("items") or []
    lines.append(f"\n## Items ({len(items)})" if items else "\n## Items: none visible")
    for n, item in enumerate(items, 1):
        flags = " [superseded]" if item.get("superseded") else ""
        lines.append(f"\n[{n}] {item.get('title')}{flags}\n"
                     f"citation: {item.get('citation')}\n"
                     f"ref: {item.get('source')}:{item.get('source_id')}  "
                     f"id: {item.get('id')}  kind: {item.get('kind')}  "
                     f"relevance: {item.get('relevance')}\n{item.get('text')}")
    memory = bundle.get("memory") or []
    if memory:
        lines.append(f"\n## Memory of past interactions ({len(memory)})")
        for m in memory:
            lines.append(f"- {m.get('created_at')}: asked {m.get('query')!r}; "
                         f"answered: {m.get('summary') or '(no summary)'}")
    facts = bundle.get("facts") or []
    if facts:
        lines.append(f"\n## Facts ({len(facts)})")
        for f in facts:
            lines.append(f"- {f.get('entity')} {f.get('attribute')} = "
                         f"{json.dumps(f.get('value'), default=str)} "
                         f"(since {f.get('valid_from')}, from {f.get('source')})")
    if bundle.get("memory_status") == "unavailable":
        lines.append("\nnote: memory was unavailable; items only.")
    return "\n".join(lines)


def build_server(api: AsyncClient,
                 headers_of: Callable[[Context], dict[str, str] | None],
                 refuse: Callable[[str], str | None] | None = None,
                 local_context: LocalCall | None = None) -> MCPServer:
    """The MCP server whose tools call the HTTP API through ``api``; ``headers_of(ctx)``
    gives the per-call headers (the caller's Authorization), None to use ``api``'s own;
    ``refuse(tool)`` may return why a tool cannot run in this deployment;
    ``local_context(ctx, call)`` may serve get_context's ``POST /v1/context`` itself
    (status and JSON body), or return None to leave it to ``api``."""
    server = MCPServer("contextd", version=__version__, instructions=INSTRUCTIONS)

    async def call(ctx: Context, tool: str, request: Call[Any],
                   local: LocalCall | None = None) -> tuple[Any, CallToolResult | None]:
        reason = refuse(tool) if refuse else None
        if reason:
            return None, tool_error(503, {"error": {"code": "unavailable",
                                                    "message": reason}})
        served = await local(ctx, request) if local is not None else None
        if served is not None:
            status, body = served
            return (body, None) if status < 400 else (None, tool_error(status, body))
        try:
            response = await api.send_raw(request, headers=headers_of(ctx))
        except httpx.HTTPError as exc:
            return None, tool_error(503, {"error": {
                "code": "unavailable", "message": f"contextd API unreachable: {exc}"}})
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = {"error": {"code": f"http_{response.status_code}",
                              "message": response.text[:300]}}
        if not response.is_success:
            return None, tool_error(response.status_code, body)
        return body, None

    def result(body: Any, text: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=body)

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def get_context(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, description=(
            "What you need context for, in natural language or with exact identifiers "
            "(deal ids, ticket numbers, subjects)."))],
        user_id: UserId = None,
        token_budget: Annotated[int | None, Field(None, ge=1, description=(
            "Most tokens of item text to return (default 2000)."))] = None,
        kinds: Annotated[list[Kind] | None, Field(None, min_length=1, description=(
            "Only these kinds of record."))] = None,
        sources: Annotated[list[str] | None, Field(None, min_length=1, description=(
            "Only these sources (names from list_sources). An unknown name is an error "
            "listing the valid ones."))] = None,
        as_of: Annotated[str | None, Field(None, description=(
            "ISO 8601 instant with timezone: answer as of that time."))] = None,
        session_id: Annotated[str | None, Field(None, min_length=1, max_length=200,
                                                description="Conversation id; recalls "
                                                "this session's earlier turns first.")] = None,
    ) -> Annotated[CallToolResult, ContextResponse]:
        """Ranked, access-scoped context for a question: passages from documents, email
        and CRM the user may see, each with a citation and a ref (pass the ref to
        read_source for the whole document), plus memory of past interactions and facts
        about the entities involved. Use it before answering anything about the user's
        company data; if found is false, say nothing relevant was found instead of
        guessing."""
        body, error = await call(ctx, "get_context", calls.context(
            query, user_id, token_budget=token_budget, kinds=kinds, sources=sources,
            as_of=as_of, session_id=session_id), local_context)
        return error or result(body, bundle_text(body))

    @server.tool(annotations=read_only)
    async def read_source(
        ctx: Context,
        citation: Annotated[str, Field(min_length=3, max_length=1300, description=(
            "The item's ref as get_context shows it ('source:source_id'), or its full "
            "citation string."))],
        user_id: UserId = None,
    ) -> Annotated[CallToolResult, DocumentOut]:
        """The whole current version of the document or record an item came from, when
        the passage in the bundle is not enough. Only documents the user may see are
        returned; anything else is 'not found'."""
        ref = parse_ref(citation)
        if ref is None:
            return tool_error(422, {"error": {
                "code": "invalid_input",
                "message": f"not a ref: {citation!r}; pass an item's ref from get_context, "
                           "e.g. 'docs:policies/travel.md'",
                "details": [{"field": "citation"}]}})
        body, error = await call(ctx, "read_source", calls.document(ref[0], ref[1], user_id))
        if error:
            return error
        text = (f"{body['title']}\ncitation: {body['citation']}\nkind: {body['kind']}  "
                f"version: {body['doc_version']}  updated: {body['updated_at']}\n\n"
                f"{body['text']}")
        return result(body, text)

    @server.tool(annotations=read_only)
    async def list_sources(ctx: Context, user_id: UserId = None,
                           ) -> Annotated[CallToolResult, SourcesOut]:
        """The sources the user may see: name (usable in get_context's sources), kinds,
        item count and freshness (state, last successful sync, lag). Check it when a
        question may depend on data that is stale or missing."""
        body, error = await call(ctx, "list_sources", calls.sources(user_id))
        if error:
            return error
        lines = [f"{len(body['sources'])} sources visible to {body['user_id']}:"]
        for s in body["sources"]:
            lag = s.get("lag_seconds")
            lines.append(f"- {s['name']}: kinds {', '.join(s['kinds']) or '-'}; "
                         f"{s['items']} items; state {s['state']}; last successful sync "
                         f"{s.get('last_success_at') or 'never'}"
                         + (f" ({lag / 3600:.1f} h ago)" if lag is not None else ""))
        return result(body, "\n".join(lines))

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=False, open_world_hint=False))
    async def record_interaction(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, description="What the user asked.")],
        summary: Annotated[str, Field(description=(
            "A short summary of the answer given; later bundles recall it."))] = "",
        user_id: UserId = None,
        session_id: Annotated[str | None, Field(None, min_length=1, max_length=200)] = None,
        bundle_id: Annotated[str | None, Field(None, min_length=1, max_length=64, description=(
            "The bundle_id of the get_context answer used."))] = None,
        outcome: Annotated[str | None, Field(None, min_length=1, max_length=50, description=(
            "e.g. resolved, escalated, abandoned"))] = None,
        entities: Annotated[list[str] | None, Field(None, max_length=100, description=(
            "Entity keys the interaction was about, e.g. deal:D-101."))] = None,
    ) -> Annotated[CallToolResult, InteractionOut]:
        """Remember what the user asked and what you answered, so later context for this
        user (and session) recalls it."""
        body, error = await call(ctx, "record_interaction", calls.record_interaction(
            query, user_id, summary=summary, session_id=session_id, bundle_id=bundle_id,
            outcome=outcome, entities=entities))
        return error or result(body, f"recorded interaction {body['id']}")

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=False, open_world_hint=False))
    async def give_feedback(
        ctx: Context,
        bundle_id: Annotated[str, Field(min_length=1, max_length=64,
                                        description="The bundle_id from get_context.")],
        rating: Annotated[int, Field(ge=1, le=5, description=(
            "1 (useless) to 5 (exactly what was needed)."))],
        used_item_ids: Annotated[list[str], Field(max_length=1000, description=(
            "ids of the bundle's items you actually used."))] = [],  # noqa: B006
    ) -> Annotated[CallToolResult, FeedbackOut]:
        """Rate a bundle and name the items you used; this is how context quality is
        measured and improved."""
        body, error = await call(ctx, "give_feedback",
                                 calls.feedback(bundle_id, rating, used_item_ids))
        return error or result(body, f"feedback {body['id']} recorded")

    return server
