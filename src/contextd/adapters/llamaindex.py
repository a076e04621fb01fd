"""contextd as a LlamaIndex retriever: each bundle item becomes a ``NodeWithScore`` whose
metadata carries its citation, so a query engine can cite what it used.

    from contextd.client import Client
    from contextd.adapters.llamaindex import ContextdRetriever
    retriever = ContextdRetriever(Client(), user_id="alice", token_budget=1500)
    nodes = retriever.retrieve("Acme renewal terms")
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from contextd.adapters.common import RetrievalOptions, item_metadata
from contextd.api.schemas import ContextResponse
from contextd.client import AsyncClient, Client


def to_nodes(bundle: ContextResponse) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=item.id, text=item.text,
                                        metadata=item_metadata(bundle, item)),
                          score=item.score)
            for item in bundle.items]


class ContextdRetriever(BaseRetriever):
    """Retrieves through ``client`` (and ``async_client`` for ``aretrieve``, else the sync
    client is used there too) with the access of ``user_id``."""

    def __init__(self, client: Client, *, async_client: AsyncClient | None = None,
                 user_id: str | None = None, token_budget: int | None = None,
                 top_k: int | None = None, kinds: list[str] | None = None,
                 sources: list[str] | None = None, session_id: str | None = None,
                 **kwargs: Any) -> None:
        self.client = client
        self.async_client = async_client
        self.options = RetrievalOptions(user_id=user_id, token_budget=token_budget,
                                        top_k=top_k, kinds=kinds, sources=sources,
                                        session_id=session_id)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return to_nodes(self.client.context(**self.options.request(query_bundle.query_str)))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self.async_client is None:
            return self._retrieve(query_bundle)
        request = self.options.request(query_bundle.query_str)
        return to_nodes(await self.async_client.context(**request))
