"""The benchmark corpus: real passages from the shared BEIR sets, repeated with a marked
title when more chunks are asked for than the sets hold (fallback: the sample company)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contextd.core.types import SourceRecord
from contextd.ingest.chunking import Chunker
from contextd.ingest.pipeline import embed_text

SHARED = Path(os.environ.get("CONTEXTD_BENCH_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = ("msmarco-subset", "dbpedia-subset", "business-reports-subset", "scifact")
ACLS = (("public",), ("group:sales",), ("group:finance",), ("group:support", "user:ann"))


def source() -> str:
    """Which passages :func:`build` uses, for the report: a run on the sample-company
    fallback (near-identical short documents, three queries) does not compare with one on
    the BEIR sets."""
    found = [name for name in SETS if (SHARED / name / "corpus.jsonl").is_file()]
    if found:
        return f"{', '.join(found)} from {SHARED}"
    return (f"sample-company fallback: no BEIR sets under {SHARED} "
            "(set CONTEXTD_BENCH_DATA); figures do not compare with BEIR runs")


def _docs() -> Iterator[tuple[str, str, str]]:
    found = False
    for name in SETS:
        path = SHARED / name / "corpus.jsonl"
        if path.is_file():
            found = True
            with path.open() as fh:
                for line in fh:
                    doc = json.loads(line)
                    yield f"{name}:{doc['_id']}", str(doc.get("title") or ""), str(doc["text"])
    if not found:
        sample = Path(__file__).resolve().parents[1] / "sample_data" / "docs"
        for path in sorted(sample.rglob("*.md")):
            yield path.name, path.stem, path.read_text()


def queries(limit: int) -> list[str]:
    """Real queries from the shared sets (or sample questions)."""
    found: list[str] = []
    for name in SETS:
        path = SHARED / name / "queries.jsonl"
        if path.is_file():
            with path.open() as fh:
                found.extend(json.loads(line)["text"] for line in fh)
    found = found or ["travel per diem", "support response time", "pricing discount"]
    return [found[i % len(found)] for i in range(limit)]


def build(chunks: int, chunker: Chunker) -> tuple[list[SourceRecord], list[list[str]]]:
    """Records whose chunking yields about ``chunks`` chunks, and per record the exact texts
    the ingest path embeds for it."""
    base = list(_docs())
    records: list[SourceRecord] = []
    texts: list[list[str]] = []
    total = 0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    copy = 0
    while total < chunks:
        for doc_id, title, text in base:
            marked = title if copy == 0 else f"{title} (copy {copy})"
            record = SourceRecord(
                source="bench", source_id=f"{doc_id}#{copy}", kind="document", title=marked,
                text=text, updated_at=start + timedelta(minutes=len(records)),
                acl=ACLS[len(records) % len(ACLS)])
            records.append(record)
            texts.append([embed_text(marked, p) for p in chunker.split(record)])
            total += len(texts[-1])
            if total >= chunks:
                break
        copy += 1
    return records, texts
