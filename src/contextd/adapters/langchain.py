"""contextd as a LangChain retriever (``pip install 'contextd[langchain]'``): each bundle
item becomes a ``Document`` whose metadata carries its citation.

    from contextd.client import Client
    from contextd.adapters.langchain import ContextdRetriever
    retriever = ContextdRetriever(client=Client(), user_id="alice")
    docs = retriever.invoke("Acme renewal terms")
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from contextd.adapters.common import RetrievalOptions, item_metadata
from contextd.api.schemas import ContextResponse


def to_documents(bundle: ContextResponse) -> list[Document]:
    return [Document(page_content=item.text, id=item.id,
                     metadata={**item_metadata(bundle, item), "score": item.score})
            for item in bundle.items]


class ContextdRetriever(BaseRetriever):
    """Retrieves through ``client`` (a ``contextd.client.Client``; ``async_client`` serves
    ``ainvoke``, else the sync client runs in LangChain's executor)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    async_client: Any = None
    user_id: str | None = None
    token_budget: int | None = None
    top_k: int | None = None
    kinds: list[str] | None = None
    sources: list[str] | None = None
    session_id: str | None = None

    def _request(self, query: str) -> dict[str, Any]:
        return RetrievalOptions(user_id=self.user_id, token_budget=self.token_budget,
                                top_k=self.top_k, kinds=self.kinds, sources=self.sources,
                                session_id=self.session_id).request(query)

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return to_documents(self.client.context(**self._request(query)))

    async def _aget_relevant_documents(
            self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
    ) -> list[Document]:
        if self.async_client is None:
            return await super()._aget_relevant_documents(query, run_manager=run_manager)
        return to_documents(await self.async_client.context(**self._request(query)))
