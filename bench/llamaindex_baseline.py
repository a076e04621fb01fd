"""The baseline most teams start from: LlamaIndex ``VectorStoreIndex`` on qdrant-client's
local mode, with the same model (vectors computed once, reused, so only querying differs)
and the same ACLs, filtered with LlamaIndex metadata filters."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.vector_stores.qdrant import QdrantVectorStore
from pydantic import PrivateAttr
from qdrant_client import QdrantClient

from bench.timing import latency_ms, timed


class SharedModelEmbedding(BaseEmbedding):
    """LlamaIndex embedding over contextd's already loaded MiniLM."""

    _encoder: Any = PrivateAttr()

    def __init__(self, encoder: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2")
        self._encoder = encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode_query(query).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode_documents([text])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def run(encoder: Any, texts: Sequence[str], vectors: np.ndarray, acls: Sequence[list[str]],
        queries: Sequence[str], principals: Sequence[str], top_k: int = 20) -> dict[str, Any]:
    """Insert the chunks with their vectors and ACLs, then time ``retrieve`` per query, with
    the caller's ACL as a metadata filter (what an access-scoped service must do) and
    without it."""
    workdir = tempfile.mkdtemp(prefix="contextd-bench-li-")
    client = QdrantClient(path=workdir)
    store = QdrantVectorStore(client=client, collection_name="baseline", batch_size=256)
    nodes = [TextNode(text=t, embedding=v.tolist(), metadata={"acl": acl},
                      id_=str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))))
             for i, (t, v, acl) in enumerate(zip(texts, vectors, acls, strict=True))]
    embed = SharedModelEmbedding(encoder)
    insert_s, index = timed(lambda: VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed, show_progress=False))
    acl_filter = MetadataFilters(filters=[
        MetadataFilter(key="acl", value=list(principals), operator=FilterOperator.IN)])
    scoped = index.as_retriever(similarity_top_k=top_k, filters=acl_filter)
    unscoped = index.as_retriever(similarity_top_k=top_k)
    samples = [timed(lambda q=q: scoped.retrieve(q))[0] for q in queries]
    open_samples = [timed(lambda q=q: unscoped.retrieve(q))[0] for q in queries]
    client.close()
    return {"insert_s": round(insert_s, 1), "queries": len(samples), **latency_ms(samples),
            "unfiltered": latency_ms(open_samples)}
