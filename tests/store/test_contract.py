"""One contract suite for every VectorStore adapter (Edge, and qdrant-client's API)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from contextd.core.edge_store import EdgeStore, PayloadCache
from contextd.core.embedder import Bm25Encoder
from contextd.core.server_store import ServerStore
from contextd.core.store import (
    VECTOR_FIELD,
    ChunkPoint,
    DocumentRef,
    Freshness,
    PayloadUpdate,
    SearchQuery,
    VectorStore,
    WriteBatch,
    vector_field,
    vectors_of,
)
from contextd.core.types import AccessScope, iso

DIM = 8
NOW = datetime(2026, 11, 25, tzinfo=UTC)
BM25 = Bm25Encoder()
WORDS = ["robot", "invoice", "renewal", "policy", "travel", "forecast", "ticket", "gripper"]


def make_store(kind: str, path: Path) -> VectorStore:
    if kind == "edge":
        return EdgeStore(path / "edge", DIM)
    return ServerStore(QdrantClient(":memory:"), "contract", DIM)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    adapter = make_store(request.param, tmp_path)
    yield adapter
    adapter.close()


def pid(n: int | str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, str(n)))


def point(n: int | str, vec: list[float], text: str, *, acl: list[str], source: str = "s",
          kind: str = "document", age_days: float = 0, source_id: str | None = None,
          ) -> ChunkPoint:
    return ChunkPoint(pid(n), vec, BM25.encode_document(text), {
        "source": source, "source_id": source_id or str(n), "kind": kind, "acl": acl,
        "text": text, "updated_at": iso(NOW - timedelta(days=age_days)), "entity_key": ""})


def unit(*xs: float) -> list[float]:
    v = np.zeros(DIM)
    v[: len(xs)] = xs
    return (v / np.linalg.norm(v)).tolist()


def ids(store: VectorStore, principals: set[str], *, mode: str = "hybrid", text: str = "robot",
        vec: list[float] | None = None, **scope: frozenset[str]) -> list[str]:
    query = SearchQuery(scope=AccessScope(frozenset(principals), **scope), limit=50,
                        dense=vec or unit(1), sparse=BM25.encode_query(text), mode=mode)  # type: ignore[arg-type]
    return [h.id for h in store.search(query)]


def test_roundtrip_and_acl(store: VectorStore) -> None:
    store.write(WriteBatch(upserts=[
        point(1, unit(1), "robot manual", acl=["public"]),
        point(2, unit(1, 0.1), "robot forecast", acl=["group:finance"]),
        point(3, unit(0.9, 0.3), "robot pricing", acl=["group:sales", "user:zed"])]))
    for mode in ("hybrid", "dense", "sparse"):
        seen = ids(store, {"public", "user:x", "group:sales"}, mode=mode)
        assert pid(2) not in seen and set(seen) == {pid(1), pid(3)}
        assert set(ids(store, {"public", "user:zed"}, mode=mode)) == {pid(1), pid(3)}
    hit = store.search(SearchQuery(scope=AccessScope(frozenset({"public"})), limit=1,
                                   dense=unit(1), mode="dense", with_vectors=True))[0]
    assert hit.payload["text"] == "robot manual" and hit.dense is not None
    assert abs(float(np.dot(hit.dense, unit(1))) - 1.0) < 1e-5


def test_scope_conditions_are_anded(store: VectorStore) -> None:
    store.write(WriteBatch(upserts=[
        point(1, unit(1), "robot", acl=["public"], source="a", kind="crm"),
        point(2, unit(1), "robot", acl=["public"], source="a", kind="email"),
        point(3, unit(1), "robot", acl=["public"], source="b", kind="crm")]))
    assert ids(store, {"public"}, sources=frozenset({"a"}), kinds=frozenset({"crm"})) == [pid(1)]
    assert ids(store, {"public"}, sources=frozenset()) == []
    assert ids(store, set()) == []


def test_hybrid_rrf_puts_the_double_winner_first(store: VectorStore) -> None:
    fillers = [point(f"f{i}", unit(1, 0.1 + 0.01 * i), "invoice ledger", acl=["public"])
               for i in range(6)]
    store.write(WriteBatch(upserts=[
        *fillers,
        point(1, unit(1), "invoice invoice", acl=["public"]),
        point(2, unit(0.2, 1), "robot robot robot", acl=["public"]),
        point(3, unit(1, 0.05), "robot arm", acl=["public"])]))
    ranked = ids(store, {"public"}, text="robot")
    assert ranked[0] == pid(3), "best in both lists must win the fusion"
    assert ids(store, {"public"}, text="robot", mode="dense")[0] == pid(1)
    assert ids(store, {"public"}, text="robot", mode="sparse")[0] == pid(2)


def test_freshness_formula_matches_half_life_and_floor(store: VectorStore) -> None:
    store.write(WriteBatch(upserts=[
        point(1, unit(1), "robot", acl=["public"], age_days=0),
        point(2, unit(1), "robot", acl=["public"], age_days=30),
        point(3, unit(1), "robot", acl=["public"], age_days=3000, kind="email"),
        point(4, unit(1), "robot", acl=["public"], age_days=30, kind="email")]))
    fresh = Freshness(now=NOW, half_life_seconds={"document": 30 * 86400, "email": 1e6,
                                                  "crm": 1.0}, floor=0.6)
    hits = store.search(SearchQuery(scope=AccessScope(frozenset({"public"})), limit=10,
                                    dense=unit(1), mode="dense", freshness=fresh))
    score = {h.id: h.score for h in hits}
    assert hits[0].id == pid(1)
    assert abs(score[pid(1)] - 1.0) < 1e-3
    assert abs(score[pid(2)] - (0.6 + 0.4 * 0.5)) < 1e-3
    assert abs(score[pid(3)] - 0.6) < 1e-3
    expected_email = 0.6 + 0.4 * 0.5 ** (30 * 86400 / 1e6)
    assert abs(score[pid(4)] - expected_email) < 1e-3


def test_payload_update_changes_acl_without_touching_vectors(store: VectorStore) -> None:
    store.write(WriteBatch(upserts=[point(1, unit(1), "robot", acl=["public"])]))
    store.write(WriteBatch(payload_updates=[PayloadUpdate([pid(1)], {"acl": ["group:finance"]})]))
    assert ids(store, {"public", "group:sales"}) == []
    assert ids(store, {"group:finance"}, mode="dense") == [pid(1)]


def _vectors(store: VectorStore, *, with_vectors: bool = True) -> dict[str, object]:
    hits = store.search(SearchQuery(scope=AccessScope(frozenset({"public"})), limit=10,
                                    dense=unit(1), mode="dense", with_vectors=with_vectors))
    assert all(VECTOR_FIELD not in h.payload for h in hits), "the copy is the adapter's own"
    return {h.id: h.dense for h in hits}


def test_hit_vectors_are_the_written_vectors(store: VectorStore) -> None:
    written = {pid(n): unit(1, 0.1 * n, -0.05 * n) for n in range(5)}
    store.write(WriteBatch(upserts=[point(n, written[pid(n)], "robot", acl=["public"])
                                    for n in range(5)]))
    vectors = _vectors(store)
    assert set(vectors) == set(written)
    for ident, vector in vectors.items():
        assert isinstance(vector, np.ndarray) and vector.dtype == np.float32
        expected = np.asarray(written[ident], dtype=np.float32)
        if isinstance(store, ServerStore):
            # The server stores a cosine vector normalized in its own float32 arithmetic.
            assert np.allclose(vector, expected, atol=1e-6)
        else:
            assert np.array_equal(vector, expected)
    assert set(_vectors(store, with_vectors=False).values()) == {None}


def test_points_without_a_usable_vector_copy_get_the_engines_vector(store: VectorStore) -> None:
    """Points written before the payload copy existed (or with a damaged one) still come
    back with their vector: the adapter asks the engine for those."""
    written = {pid(n): unit(1, 0.2 * n) for n in range(4)}
    store.write(WriteBatch(upserts=[point(n, written[pid(n)], "robot", acl=["public"])
                                    for n in range(4)]))
    store.write(WriteBatch(payload_updates=[
        PayloadUpdate([pid(0)], {VECTOR_FIELD: None}),
        PayloadUpdate([pid(1)], {VECTOR_FIELD: "not base64 at all!"}),
        PayloadUpdate([pid(2)], {VECTOR_FIELD: vector_field([1.0, 0.0])}),  # wrong length
    ]))
    vectors = _vectors(store)
    assert set(vectors) == set(written)
    for ident, vector in vectors.items():
        assert isinstance(vector, np.ndarray)
        assert np.allclose(vector, written[ident], atol=1e-6), ident


def test_deletes_existing_ids_and_count(store: VectorStore) -> None:
    store.write(WriteBatch(upserts=[
        point(1, unit(1), "robot", acl=["public"], source="a", source_id="doc1"),
        point(2, unit(1), "robot", acl=["public"], source="a", source_id="doc1"),
        point(3, unit(1), "robot", acl=["public"], source="a", source_id="doc2"),
        point(4, unit(1), "robot", acl=["public"], source="b")]))
    assert store.count() == 4 and store.count("a") == 3
    assert store.existing_ids([pid(1), pid(99)]) == {pid(1)}
    store.write(WriteBatch(delete_documents=[DocumentRef("a", "doc1")]))
    assert store.count("a") == 1
    store.write(WriteBatch(delete_ids=[pid(3)]))
    store.write(WriteBatch(delete_sources=["b"]))
    assert store.count() == 0


def test_edge_store_persists_across_reopen(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "edge", DIM)
    first.write(WriteBatch(upserts=[point(1, unit(1), "robot", acl=["public"])]))
    first.close()
    again = EdgeStore(tmp_path / "edge", DIM)
    assert again.count() == 1 and again.existing_ids([pid(1)]) == {pid(1)}
    again.close()


def test_edge_store_search_pool_size_changes_nothing_served(tmp_path: Path) -> None:
    """``edge_search_threads`` sizes the shard's search pool on every open (persisted by the
    engine, so each open states it): results are the same with one thread or several."""
    points = random_corpus(7, n=120)
    store = EdgeStore(tmp_path / "edge", DIM, search_threads=1)
    store.write(WriteBatch(upserts=points))
    query = SearchQuery(scope=AccessScope(frozenset({"public", "group:a"})), limit=20,
                        dense=points[0].dense, mode="dense")
    one = [(h.id, round(h.score, 6)) for h in store.search(query)]
    store.close()
    again = EdgeStore(tmp_path / "edge", DIM, search_threads=4)
    assert [(h.id, round(h.score, 6)) for h in again.search(query)] == one and one
    again.close()


def test_a_search_after_a_change_serves_the_changed_point(store: VectorStore) -> None:
    """Edge serves payloads and vectors from a cache keyed by the point's version: every
    change (payload update, re-upsert, delete and re-insert) is seen by the next search,
    whether or not the point was searched before."""
    query = SearchQuery(scope=AccessScope(frozenset({"public"})), limit=10, dense=unit(1),
                        sparse=BM25.encode_query("robot"), mode="hybrid", with_vectors=True,
                        legs=True)

    def served() -> dict[str, tuple[str, np.ndarray]]:
        return {h.id: (h.payload["text"], np.asarray(h.dense)) for h in store.search(query)}

    store.write(WriteBatch(upserts=[point(n, unit(1, 0.1 * n), f"robot {n}", acl=["public"])
                                    for n in range(3)]))
    assert served()[pid(0)][0] == "robot 0"
    store.write(WriteBatch(payload_updates=[PayloadUpdate([pid(0)], {"text": "robot zero"})]))
    assert served()[pid(0)][0] == "robot zero"
    store.write(WriteBatch(upserts=[point(1, unit(1, -0.3), "robot one", acl=["public"])]))
    text, vector = served()[pid(1)]
    assert text == "robot one" and np.allclose(vector, unit(1, -0.3), atol=1e-6)
    store.write(WriteBatch(delete_ids=[pid(2)]))
    assert pid(2) not in served()
    store.write(WriteBatch(upserts=[point(2, unit(1, 0.5), "robot two", acl=["public"])]))
    assert served()[pid(2)][0] == "robot two"
    store.write(WriteBatch(payload_updates=[PayloadUpdate([pid(2)], {"acl": ["group:x"]})]))
    assert pid(2) not in served()
    hits = store.search(query)
    assert len(hits) == 2 and all(h.payload["acl"] == ["public"] for h in hits)


def test_edge_payload_cache_holds_at_most_its_size(tmp_path: Path) -> None:
    """The cache is bounded, and a store serves the same with it (cold or warm), with a
    small one, and without one."""
    points = random_corpus(11, n=120)
    query = SearchQuery(scope=AccessScope(frozenset({"public", "group:a"})), limit=40,
                        dense=points[0].dense, sparse=points[0].sparse, mode="hybrid",
                        with_vectors=True, legs=True, prefetch_limit=40)
    store = EdgeStore(tmp_path / "edge", DIM)
    store.write(WriteBatch(upserts=points))
    served = []
    for size in (0, 10, 10_000):
        store.payloads = PayloadCache(size)
        for _ in range(2):
            served.append([(h.id, h.score, h.payload, np.asarray(h.dense).tolist(), h.legs)
                           for h in store.search(query)])
        assert len(store.payloads) <= size
    store.close()
    assert served[0] and all(s == served[0] for s in served)


def random_corpus(seed: int, n: int = 200) -> list[ChunkPoint]:
    rng = np.random.default_rng(seed)
    groups = ["public", "group:a", "group:b", "group:c", "user:u1"]
    points = []
    for i in range(n):
        vec = rng.normal(size=DIM)
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
        acl = sorted(set(rng.choice(groups, size=int(rng.integers(1, 3))).tolist()))
        points.append(point(i, (vec / np.linalg.norm(vec)).tolist(), words, acl=acl,
                            kind=str(rng.choice(["document", "email", "crm"])),
                            age_days=float(rng.integers(0, 400))))
    return points


def test_adapters_agree_on_the_same_corpus(tmp_path: Path) -> None:
    """Congruence: identical operations give identical rankings on both adapters."""
    corpus = random_corpus(7)
    stores = [make_store("edge", tmp_path), make_store("server", tmp_path)]
    for s in stores:
        s.write(WriteBatch(upserts=corpus))
    rng = np.random.default_rng(11)
    fresh = Freshness(now=NOW, half_life_seconds={"document": 9e6, "email": 2e6, "crm": 5e6})
    try:
        for _ in range(30):
            vec = rng.normal(size=DIM)
            text = " ".join(rng.choice(WORDS, size=2))
            principals = frozenset({"public", str(rng.choice(["group:a", "group:b"]))})
            for mode in ("dense", "sparse", "hybrid"):
                for freshness in (None, fresh):
                    query = SearchQuery(scope=AccessScope(principals), limit=10,
                                        dense=(vec / np.linalg.norm(vec)).tolist(),
                                        sparse=BM25.encode_query(text), mode=mode,  # type: ignore[arg-type]
                                        freshness=freshness)
                    edge, server = (s.search(query) for s in stores)
                    assert len(edge) == len(server)
                    if mode == "dense":
                        assert [h.id for h in edge] == [h.id for h in server]
                        for a, b in zip(edge, server, strict=True):
                            assert abs(a.score - b.score) < 1e-4
                    else:
                        # BM25 often ties (same words, same length); engines break ties in
                        # their own order, which shifts RRF ranks. The sets still agree.
                        overlap = {h.id for h in edge} & {h.id for h in server}
                        assert len(overlap) >= 0.7 * len(edge)
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_no_result_ever_outside_the_principals(kind: str, tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    adapter = make_store(kind, tmp_path_factory.mktemp(kind))
    adapter.write(WriteBatch(upserts=random_corpus(3, 300)))
    principal = st.sampled_from(["public", "group:a", "group:b", "group:c", "user:u1", "user:u2"])

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(principals=st.frozensets(principal, max_size=4),
           kinds=st.none() | st.frozensets(st.sampled_from(["document", "email", "crm"])),
           mode=st.sampled_from(["dense", "sparse", "hybrid"]),
           seed=st.integers(0, 2**16), limit=st.integers(1, 60))
    def check(principals: frozenset[str], kinds: frozenset[str] | None, mode: str, seed: int,
              limit: int) -> None:
        vec = np.random.default_rng(seed).normal(size=DIM)
        query = SearchQuery(scope=AccessScope(principals, kinds=kinds), limit=limit,
                            dense=(vec / np.linalg.norm(vec)).tolist(),
                            sparse=BM25.encode_query(" ".join(WORDS[seed % 8:seed % 8 + 3])),
                            mode=mode)  # type: ignore[arg-type]
        for hit in adapter.search(query):
            assert set(hit.payload["acl"]) & principals
            assert kinds is None or hit.payload["kind"] in kinds

    try:
        check()
    finally:
        adapter.close()


@pytest.mark.parametrize("dim", [384, 5])  # 1536 bytes: no base64 padding; 20 bytes: padded
def test_payload_copies_decode_as_one_or_one_by_one_to_the_same_vectors(dim: int) -> None:
    rng = np.random.default_rng(dim)
    written = [rng.standard_normal(dim).astype(np.float32) for _ in range(6)]
    copies: list[object] = [vector_field(v) for v in written]
    decoded = vectors_of(copies, dim)
    assert all(np.array_equal(d, w) for d, w in zip(decoded, written, strict=True))
    # a damaged copy of the right length, one missing, one of another length: those are
    # None (the adapter asks the engine), the others still decode exactly
    damaged = list(copies)
    damaged[1] = "!" * len(str(copies[1]))
    damaged[3] = None
    damaged[4] = vector_field(written[4][:-1])
    decoded = vectors_of(damaged, dim)
    assert [n for n, d in enumerate(decoded) if d is None] == [1, 3, 4]
    for n in (0, 2, 5):
        assert np.array_equal(decoded[n], written[n])
