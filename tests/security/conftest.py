"""A small company for the security tests: documents of several sources, kinds and ACLs,
users in groups, and keys of every shape, served through the real app over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from contextd.api.app import create_app
from contextd.runtime import Runtime
from contextd.state.keys import KeyPolicy, create_key
from contextd.state.principals import set_user_groups
from tests.factories import record

# Restricted canaries: no key that may not see them must ever get their text or ids.
ALICE_CRM = "CANARY-ALICE-CRM renewal terms for Globex, discount 37 percent"
BOB_DOC = "CANARY-BOB-DOC salary review notes for the platform team"
PUBLIC_DOC = "Travel policy: economy class for flights under six hours"


def company(runtime: Runtime) -> None:
    """Documents and directory rows shared by the tests."""
    runtime.ingestor.ingest([
        record("travel.md", PUBLIC_DOC, source="docs"),
        record("bob-salary.md", BOB_DOC, acl=("user:bob",), source="docs"),
        record("deal-globex", ALICE_CRM, acl=("user:alice",), source="crm", kind="crm"),
    ])
    set_user_groups(runtime.engine, user_id="alice", groups=["sales"])
    set_user_groups(runtime.engine, user_id="bob", groups=["eng"])
    set_user_groups(runtime.engine, user_id="carol", groups=["sales"])


def key(runtime: Runtime, role: str, **policy: object) -> str:
    """A fresh key of ``role`` with the given policy fields (sets as lists)."""
    fields = {k: frozenset(v) if isinstance(v, list | tuple | set) else v
              for k, v in policy.items()}
    return create_key(runtime.engine, name=f"sec-{role}-{len(policy)}", role=role,
                      policy=KeyPolicy(**fields))[1]  # type: ignore[arg-type]


@dataclass
class Api:
    """The app under test with a bearer per call."""

    client: TestClient
    runtime: Runtime

    def call(self, method: str, path: str, token: str, **kwargs: object):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}", **dict(kwargs.pop("headers", {}) or {})}
        return self.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def make_api(make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def build(store: str = "edge", **settings: object) -> Api:
        runtime = make_runtime(store=store, scheduler_enabled=False, **settings)
        company(runtime)
        client = TestClient(create_app(runtime=runtime), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Api(client, runtime)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
