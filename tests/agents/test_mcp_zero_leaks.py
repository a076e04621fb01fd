"""The zero-leak property through MCP: generated worlds of users, nested groups, documents
with random ACLs, agent keys with scopes and request filters (tests/access/test_zero_leaks.py)
served by a live server, and every tool asked through the official client. No item, document
or source outside what the key and the user's ACL allow ever comes back; a filter naming a
source the key cannot use is an error, never a wider search."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.types import SourceRecord, Tombstone
from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from contextd.state.principals import set_group_parents, set_user_groups
from tests.access.test_zero_leaks import MemoEncoder, World, oracle_principals, worlds
from tests.agents.world import mcp_session, run, text_of
from tests.conftest import LiveServer
from tests.factories import record

_example = itertools.count()


@pytest.fixture
def server(tmp_path: Path,
           encoder: SentenceTransformerEncoder) -> Iterator[LiveServer]:
    runtime = Runtime(Settings(data_dir=tmp_path / "mcp-leaks"),
                      dense_encoder=MemoEncoder(encoder))
    runtime.migrate()
    try:
        with LiveServer(runtime) as live:
            yield live
    finally:
        runtime.close()


def _allowed(limit: frozenset[str] | None, value: str) -> bool:
    return limit is None or value in limit


def _visible(r: SourceRecord, principals: set[str], policy: KeyPolicy,
             sources: frozenset[str] | None = None,
             kinds: frozenset[str] | None = None) -> bool:
    """The oracle: computed from the generated world, without the service."""
    return (bool(set(r.acl) & principals) and _allowed(policy.sources, r.source)
            and _allowed(policy.kinds, r.kind) and _allowed(sources, r.source)
            and _allowed(kinds, r.kind))


def check_world(server: LiveServer, world: World) -> int:
    runtime = server.runtime
    ns = f"m{next(_example)}"
    for group, parents in world.group_parents.items():
        set_group_parents(runtime.engine, group_id=f"{ns}-{group}",
                          parents=[f"{ns}-{p}" for p in parents])
    for user, groups in world.user_groups.items():
        set_user_groups(runtime.engine, user_id=f"{ns}-{user}",
                        groups=[f"{ns}-{g}" for g in groups])

    def scoped(principal: str) -> str:
        kind, sep, ident = principal.partition(":")
        return f"{kind}:{ns}-{ident}" if sep else principal

    records = [record(f"d{i}", f"{' '.join(doc.words)} item{i}", source=f"{ns}-{doc.source}",
                      kind=doc.kind, acl=tuple(sorted(scoped(p) for p in doc.acl)))
               for i, doc in enumerate(world.docs)]
    truth = {(r.source, r.source_id): r for r in records}
    known = {r.source for r in records}
    runtime.ingestor.ingest(records)
    keys: list[tuple[KeyPolicy, str]] = []
    for n, (key_sources, key_kinds) in enumerate(world.key_scopes):
        policy = KeyPolicy(sources=None if key_sources is None else frozenset(
            f"{ns}-{s}" for s in key_sources), kinds=key_kinds)
        keys.append((policy, create_key(runtime.engine, name=f"{ns}-k{n}", role="agent",
                                        policy=policy)[1]))
    cases = 0

    async def ask_all() -> None:
        nonlocal cases
        for policy, key in keys:
            async with mcp_session(f"{server.base_url}/mcp", key) as session:
                for user in [*world.user_groups, "stranger"]:
                    uid = f"{ns}-{user}"
                    principals = {scoped(p) for p in oracle_principals(world, user)}

                    def visible(r: SourceRecord, sources: frozenset[str] | None = None,
                                kinds: frozenset[str] | None = None,
                                principals: set[str] = principals,
                                policy: KeyPolicy = policy) -> bool:
                        return _visible(r, principals, policy, sources, kinds)

                    for query, sources, kinds in world.requests:
                        req_sources = None if sources is None else frozenset(
                            f"{ns}-{s}" for s in sources)
                        args: dict[str, object] = {"query": query, "user_id": uid,
                                                   "token_budget": 20_000}
                        if req_sources is not None:
                            args["sources"] = sorted(req_sources)
                        if kinds is not None:
                            args["kinds"] = sorted(kinds)
                        result = await session.call_tool("get_context", args)
                        usable = known if policy.sources is None else known & policy.sources
                        if req_sources is not None and not req_sources <= usable:
                            assert result.is_error and "unknown source" in text_of(result)
                            cases += 1
                            continue
                        assert not result.is_error, text_of(result)
                        got = {(i["source"], i["source_id"])
                               for i in result.structured_content["items"]}
                        allowed = {k for k, r in truth.items()
                                   if visible(r, req_sources, kinds)}
                        assert got <= allowed, f"leak via get_context: {got - allowed}"
                        cases += 1
                    listed = await session.call_tool("list_sources", {"user_id": uid})
                    counts = {s["name"]: s["items"]
                              for s in listed.structured_content["sources"]
                              if s["name"].startswith(f"{ns}-")}
                    expect: dict[str, int] = {}
                    for r in truth.values():
                        if visible(r):
                            expect[r.source] = expect.get(r.source, 0) + 1
                    assert counts == expect, f"list_sources: {counts} != {expect}"
                    for (source, source_id), r in truth.items():
                        read = await session.call_tool("read_source", {
                            "citation": f"{source}:{source_id}", "user_id": uid})
                        assert read.is_error != visible(r), (source_id, text_of(read))
                        cases += 1

    try:
        run(ask_all)
    finally:
        runtime.ingestor.ingest([], [Tombstone(r.source, r.source_id) for r in records])
    return cases


@pytest.mark.slow
def test_zero_leaks_through_mcp(server: LiveServer) -> None:
    total = 0

    @settings(max_examples=10, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(world=worlds())
    def check(world: World) -> None:
        nonlocal total
        total += check_world(server, world)

    for _ in range(5):  # generated worlds vary in size: draw more until enough cases
        check()
        if total >= 150:
            break
    print(f"zero-leak cases checked through MCP: {total}")
    assert total >= 150, f"only {total} cases checked"
