"""Access scope is a hard limit: a sales user never receives a finance-only item.

Runs the real retriever on the bundled sample company through both store adapters, with
hypothesis drawing queries from the corpus's own vocabulary (finance words included) plus
random scope narrowing, and checks every served item against the user's principals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.settings import Settings
from contextd.core.types import AccessScope
from contextd.demo import load_demo
from contextd.retrieval.schemas import ContextQuery
from contextd.runtime import Runtime
from contextd.state.documents import get_documents
from contextd.state.principals import effective_principals
from tests.conftest import SAMPLE_DATA

USERS = json.loads((SAMPLE_DATA / "principals.json").read_text())["users"]
SALES_ONLY = sorted(u for u, groups in USERS.items() if "sales" in groups
                    and "finance" not in groups)


def _vocabulary() -> list[str]:
    words: set[str] = set()
    for path in (SAMPLE_DATA / "docs").rglob("*"):
        if path.suffix in (".md", ".html", ".txt"):
            words.update(re.findall(r"[A-Za-z]{4,}", path.read_text(errors="ignore")))
    return sorted(words)


VOCAB = _vocabulary()


@pytest.fixture(scope="module", params=["edge", "server"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           encoder: SentenceTransformerEncoder) -> Iterator[Runtime]:
    settings_ = Settings(data_dir=tmp_path_factory.mktemp(f"acl-{request.param}"),
                         filesystem_allowed_roots=[SAMPLE_DATA])
    runtime = Runtime(settings_, dense_encoder=encoder)
    runtime.migrate()
    if request.param == "server":
        from qdrant_client import QdrantClient

        from contextd.core.server_store import ServerStore

        runtime._store = ServerStore(QdrantClient(":memory:"), "acl", encoder.dim)
    load_demo(runtime, SAMPLE_DATA)
    yield runtime
    runtime.close()


def _served(runtime: Runtime, user: str, query: str, *, kinds: frozenset[str] | None = None,
            sources: frozenset[str] | None = None, top_k: int = 50) -> tuple[frozenset[str],
                                                                           list[list[str]]]:
    principals = effective_principals(runtime.engine, user_id=user)
    scope = AccessScope(principals, sources=sources, kinds=kinds)
    bundle = runtime.retriever.bundle(
        ContextQuery(query=query, user_id=user, top_k=top_k, token_budget=30000,
                     min_relevance=0.0), scope)
    acls = []
    for item in bundle.items:
        # The documents table is the source of truth for each document's ACL.
        row = get_documents(runtime.engine, source=item.source,
                            source_ids=[item.source_id])[item.source_id]
        assert not row.deleted
        acls.append(sorted(row.acl))
    return principals, acls


def test_sample_data_has_finance_only_items(loaded: Runtime) -> None:
    assert SALES_ONLY, "sample data must have a sales user without finance"
    _, acls = _served(loaded, "__finance_probe__", "EBITDA forecast salary band board")
    assert all("group:finance" not in acl for acl in acls)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(VOCAB), min_size=1, max_size=6),
       user=st.sampled_from([*sorted(USERS), "stranger"]),
       kinds=st.none() | st.frozensets(st.sampled_from(["document", "email", "crm"]),
                                       min_size=1),
       top_k=st.integers(1, 60))
def test_no_item_outside_the_users_principals(loaded: Runtime, words: list[str], user: str,
                                              kinds: frozenset[str] | None, top_k: int) -> None:
    principals, acls = _served(loaded, user, " ".join(words), kinds=kinds, top_k=top_k)
    for acl in acls:
        assert set(acl) & principals, f"{user} got an item with ACL {acl}"
    if user in SALES_ONLY:
        assert not any(set(acl) == {"group:finance"} for acl in acls)


@pytest.mark.parametrize("query", ["EBITDA", "Q3 forecast", "salary bands", "board deck",
                                   "finance", "revenue forecast EBITDA margin"])
@pytest.mark.parametrize("user", SALES_ONLY)
def test_sales_users_never_see_finance_documents(loaded: Runtime, user: str,
                                                 query: str) -> None:
    _, acls = _served(loaded, user, query)
    assert acls, "the query should still find visible context"
    assert all(acl != ["group:finance"] for acl in acls)


def test_scope_keeps_results_full_length(loaded: Runtime) -> None:
    """Filtering happens in the engine: a narrow scope still fills top_k when it can."""
    user = SALES_ONLY[0]
    _, acls = _served(loaded, user, "policy", top_k=5)
    assert len(acls) == 5


def test_finance_user_does_see_finance_documents(loaded: Runtime) -> None:
    finance_users = sorted(u for u, g in USERS.items() if "finance" in g)
    _, acls = _served(loaded, finance_users[0], "EBITDA forecast")
    assert any("group:finance" in acl for acl in acls)
