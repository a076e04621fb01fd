"""Offline retrieval evaluation on BEIR-layout datasets: nDCG@10, MRR and recall@100.

Documents are ingested through the real pipeline (chunking, both encoders, the store) and
queried through the real retriever in each mode; a document's score is its best chunk's.
nDCG uses gain ``2^rel - 1`` and the ideal ranking of the judged documents.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from contextd.core.errors import InvalidInput
from contextd.core.store import SearchMode
from contextd.core.types import PUBLIC, AccessScope, SourceRecord
from contextd.retrieval.schemas import ContextQuery
from contextd.retrieval.service import Retriever

EVAL_SOURCE = "eval"
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """Corpus, queries with at least one relevant document, and graded qrels."""

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{number}: not JSON ({exc.msg})") from exc


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (header optional)."""
    paths = {"corpus": directory / "corpus.jsonl", "queries": directory / "queries.jsonl",
             "qrels": directory / "qrels" / f"{split}.tsv"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InvalidInput(f"not a BEIR dataset, missing: {', '.join(missing)}")
    corpus = {str(d["_id"]): (str(d.get("title") or ""), str(d.get("text") or ""))
              for d in _jsonl(paths["corpus"])}
    qrels: dict[str, dict[str, int]] = {}
    with paths["qrels"].open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
                continue  # header or blank line
            if int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(paths["queries"])
               if str(q["_id"]) in qrels}
    return BeirDataset(corpus=corpus, queries=queries,
                       qrels={q: r for q, r in qrels.items() if q in queries})


def records(dataset: BeirDataset) -> Iterator[SourceRecord]:
    """The corpus as public documents, all dated alike (freshness plays no part)."""
    for doc_id, (title, text) in dataset.corpus.items():
        yield SourceRecord(source=EVAL_SOURCE, source_id=doc_id, kind="document", title=title,
                           text=text, updated_at=_EPOCH, acl=(PUBLIC,))


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def reciprocal_rank(ranked: list[str], relevant: dict[str, int]) -> float:
    """1 / rank of the first relevant document, 0 when none is ranked."""
    return next((1.0 / (i + 1) for i, d in enumerate(ranked) if relevant.get(d, 0) > 0), 0.0)


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def rank_documents(retriever: Retriever, query: str, mode: SearchMode,
                   limit: int = 100) -> list[str]:
    """Document ids by their best chunk, from a scoped search without freshness."""
    hits = retriever.search(ContextQuery(query=query, user_id="eval"),
                            AccessScope(frozenset({PUBLIC})), limit=limit * 3, mode=mode,
                            freshness=False)
    ranked: list[str] = []
    for hit in hits:
        doc = str(hit.hit.payload["source_id"])
        if doc not in ranked:
            ranked.append(doc)
    return ranked[:limit]


def evaluate(retriever: Retriever, dataset: BeirDataset,
             modes: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid"),
             ) -> dict[str, dict[str, float]]:
    """Mean nDCG@10, MRR and recall@100 per mode over the judged queries."""
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        ndcgs, rrs, recalls = [], [], []
        for qid, text in dataset.queries.items():
            ranked = rank_documents(retriever, text, mode)
            ndcgs.append(ndcg_at(ranked, dataset.qrels[qid]))
            rrs.append(reciprocal_rank(ranked, dataset.qrels[qid]))
            recalls.append(recall_at(ranked, dataset.qrels[qid]))
        count = max(len(ndcgs), 1)
        results[mode] = {"ndcg@10": sum(ndcgs) / count, "mrr": sum(rrs) / count,
                         "recall@100": sum(recalls) / count, "queries": float(len(ndcgs))}
    return results
