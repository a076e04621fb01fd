"""Mark a served item ``superseded`` when a newer version of its entity exists, even when
that newer version was not among the candidates.

:func:`contextd.retrieval.ranking.supersede` orders the versions it sees among the
candidates; a query that targets an old version (its figures, its year) often finds only
that one. One engine call, under the caller's scope and ``as_of``, lists the versions of
the served items' entities, so ``superseded_by`` points only at a version the caller may
see and that existed at the time asked about.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contextd.core.store import VectorStore
from contextd.core.types import AccessScope
from contextd.retrieval.ranking import Candidate
from contextd.retrieval.scoring import parse_ts


def mark_superseded(store: VectorStore, scope: AccessScope, served: Sequence[Candidate],
                    until: datetime) -> None:
    """Set ``superseded``/``superseded_by`` on each of ``served`` that a newer visible
    version of its entity replaced at or before ``until``."""
    open_items = [c for c in served if not c.superseded and c.hit.payload.get("entity_key")]
    if not open_items:
        return
    keys = sorted({str(c.hit.payload["entity_key"]) for c in open_items})
    newest: dict[str, tuple[datetime, str, str]] = {}  # entity -> (updated_at, source, id)
    for row in store.versions(scope, keys, until):
        key = str(row.get("entity_key") or "")
        version = (parse_ts(row.get("updated_at")), str(row.get("source") or ""),
                   str(row.get("source_id") or ""))
        if key and (key not in newest or version[0] > newest[key][0]):
            newest[key] = version
    for cand in open_items:
        payload = cand.hit.payload
        found = newest.get(str(payload["entity_key"]))
        if found is None or found[0] <= cand.updated_at:
            continue
        if (found[1], found[2]) == (str(payload.get("source") or ""),
                                    str(payload.get("source_id") or "")):
            continue  # a later write of this same record: not another version
        cand.superseded = True
        cand.superseded_by = found[2]
        cand.notes.append(f"supersession: a newer version {found[2]} exists")
