"""Serving never waits for ingest: agents' queries over real HTTP are answered, and
answered right, while a filesystem sync of a few thousand chunks embeds in the document
process and writes to the same Edge store; no query waits behind a document job, and
afterwards every chunk is in the store with the vector the server's own model gives."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from contextd.core.embedder import SentenceTransformerEncoder
from contextd.core.store import DENSE
from contextd.ingest.pipeline import embed_text
from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys, record

SYNCED = 2000
NEEDLES = {
    "rooftop": ("The Lisbon office rooftop garden is watered every Tuesday by facilities.",
                "when is the rooftop garden watered"),
    "tax": ("Quarterly tax filings for the Norwegian subsidiary are due on the fifteenth.",
            "norwegian subsidiary tax filing deadline"),
    "espresso": ("The espresso machine on floor three is descaled monthly with citric acid.",
                 "how is the espresso machine descaled"),
    "volcano": ("Volcano evacuation drills at the Reykjavik site happen twice a year.",
                "volcano evacuation drill frequency"),
    "chess": ("The chess club meets in conference room Ganymede on Thursdays.",
              "where does the chess club meet"),
}


def write_corpus(folder: Path) -> None:
    """One short file per chunk, about shipments: nothing like the needles."""
    folder.mkdir()
    for n in range(SYNCED):
        (folder / f"s{n}.txt").write_text(f"Shipment {n} arrived at dock {n % 9}.")


def test_queries_during_a_sync_are_answered_right_and_every_chunk_is_embedded(
        make_runtime: Callable[..., Runtime], encoder: SentenceTransformerEncoder,
        tmp_path: Path) -> None:
    runtime = make_runtime(filesystem_allowed_roots=[tmp_path])
    runtime.ingestor.ingest([record(name, text, source="handbook")
                             for name, (text, _) in NEEDLES.items()])
    write_corpus(tmp_path / "corpus")
    k = keys(runtime.engine)
    documents = encoder.documents
    assert documents is not None
    batches_before = documents.batches
    counts = encoder.owner.counts
    jobs_before = counts["document_jobs"]
    with LiveServer(runtime) as server, server.client(k["admin"]) as admin, \
            ThreadPoolExecutor(max_workers=4) as pool:
        created = admin.post("/v1/connectors", json={
            "name": "shipments", "kind": "filesystem",
            "config": {"path": str(tmp_path / "corpus"), "default_acl": ["public"]}})
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        # About a minute on two idle cores; the timeout leaves room for a shared machine.
        sync = pool.submit(lambda: admin.post(f"/v1/connectors/{cid}/sync?wait=true",
                                              timeout=1800))

        def ask(name: str) -> tuple[bool, str, str]:
            """(asked and answered while the sync embedded, needle, top item's id)"""
            started = sync.running() and documents.batches > batches_before
            with server.client(k["agent"]) as agent:
                resp = agent.post("/v1/context", json={"query": NEEDLES[name][1],
                                                       "user_id": "ann", "top_k": 3})
            assert resp.status_code == 200, resp.text
            return started and sync.running(), name, resp.json()["items"][0]["source_id"]

        answers: list[tuple[bool, str, str]] = []
        while not sync.done():  # two agents at a time, as long as the sync runs
            answers.extend(pool.map(ask, list(NEEDLES)[:2]))
            time.sleep(0.05)
        answers.extend(pool.map(ask, list(NEEDLES)))
        run = sync.result()
    assert run.status_code == 200, run.text
    assert run.json()["status"] == "success"
    assert run.json()["chunks_embedded"] == SYNCED
    assert all(got == name for _, name, got in answers), answers
    assert sum(during for during, _, _ in answers) >= 6, "too few queries ran during the sync"
    assert documents.batches > batches_before
    assert counts["document_jobs"] == jobs_before  # no document work on the query thread

    assert runtime.store.count() == SYNCED + len(NEEDLES)
    points = runtime.store._shard.retrieve(  # type: ignore[attr-defined]
        _synced_ids(runtime), with_payload=True, with_vector=[DENSE])
    assert len(points) == SYNCED
    sample = points[::40]
    texts = [embed_text(str(p.payload["title"]), str(p.payload["text"])) for p in sample]
    stored = np.asarray([p.vector[DENSE] for p in sample], dtype=np.float32)
    solo = np.stack([encoder.encode_query(t) for t in texts])  # this process's model
    assert np.abs(stored - solo).max() < 1e-5


def _synced_ids(runtime: Runtime) -> list[str]:
    from sqlmodel import Session, select

    from contextd.state.tables import DocumentRow

    with Session(runtime.engine) as session:
        rows = session.exec(select(DocumentRow).where(DocumentRow.source == "shipments"))
        return [cid for row in rows for cid in row.chunk_ids]
