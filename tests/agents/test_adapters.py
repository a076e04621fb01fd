"""The LlamaIndex and LangChain retrievers against a live server: nodes and documents with
citations as metadata, within the user's access."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore

from contextd.adapters.langchain import ContextdRetriever as LangChainRetriever
from contextd.adapters.llamaindex import ContextdRetriever as LlamaRetriever
from contextd.client import AsyncClient, Client
from contextd.runtime import Runtime
from tests.agents.world import RESTRICTED, load_world, run
from tests.conftest import LiveServer
from tests.factories import keys


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    load_world(runtime)
    with LiveServer(runtime) as live:
        yield live


def test_llamaindex_retriever_returns_nodes_with_citations(server: LiveServer,
                                                           runtime: Runtime) -> None:
    key = keys(runtime.engine)["agent"]
    with Client(server.base_url, key) as client:
        ana = LlamaRetriever(client, user_id="ana", token_budget=1000)
        nodes = ana.retrieve("salary bands for engineers")
        assert nodes and all(isinstance(n, NodeWithScore) for n in nodes)
        top = nodes[0]
        assert (top.node.metadata["source"], top.node.metadata["source_id"]) == (
            "hr", "salaries.md")
        assert top.node.metadata["citation"].startswith("Salary bands (")
        assert top.node.metadata["ref"] == "hr:salaries.md" and top.score is not None
        bob = LlamaRetriever(client, user_id="bob")
        got = {(n.node.metadata["source"], n.node.metadata["source_id"])
               for n in bob.retrieve("how long is parental leave")}
        assert got and not got & RESTRICTED

    async def go() -> None:
        async with AsyncClient(server.base_url, key) as aclient:
            with Client(server.base_url, key) as client:
                retriever = LlamaRetriever(client, async_client=aclient, user_id="ana")
                nodes = await retriever.aretrieve("Acme renewal champion")
                assert nodes[0].node.metadata["source_id"] == "acme.json"

    run(go)


def test_langchain_retriever_returns_documents_with_citations(server: LiveServer,
                                                              runtime: Runtime) -> None:
    key = keys(runtime.engine)["agent"]
    with Client(server.base_url, key) as client:
        retriever = LangChainRetriever(client=client, user_id="ana", sources=["hr"])
        docs = retriever.invoke("salary bands for engineers")
        assert docs and all(isinstance(d, Document) for d in docs)
        assert {d.metadata["source"] for d in docs} == {"hr"}
        assert docs[0].metadata["citation"].startswith("Salary bands (")
        bob = LangChainRetriever(client=client, user_id="bob")
        got = {(d.metadata["source"], d.metadata["source_id"])
               for d in bob.invoke("Acme renewal champion")}
        assert not got & RESTRICTED

    async def go() -> None:
        async with AsyncClient(server.base_url, key) as aclient:
            retriever = LangChainRetriever(client=None, async_client=aclient, user_id="ana")
            docs = await retriever.ainvoke("Acme renewal champion")
            assert docs[0].metadata["source_id"] == "acme.json"

    run(go)
