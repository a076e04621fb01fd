"""Golden sets: judged queries over the live index, from JSON or a BEIR-layout upload.

A set is validated whole before anything is written: unique query ids, judgments only for
known queries, grades that are integers >= 0, and every judged document present (not
deleted) in the documents table and visible to its query's user, so a run can never
silently score against ids the index does not hold or the user could never be served.

Sets are held to the asking key (:class:`Viewer`): a key names only users it may act for,
stays within its sources and kinds, and a set it could not have made is, to it, a set that
does not exist. A judged id that is unknown and one that is invisible get the same answer,
so creating a set cannot confirm which restricted ids exist.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from contextd.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from contextd.core.types import KINDS, PUBLIC, iso, utcnow
from contextd.state.db import session_scope
from contextd.state.principals import effective_principals
from contextd.state.tables import DocumentRow, EvalRunRow, GoldenSetRow

MAX_QUERIES = 5000
# The user of a query that names none: it sees public documents only (never the
# directory's entries for a user who happens to be called so).
EVAL_USER = "eval"


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the asking key may see: the users it may act for, its sources and kinds
    (None: not narrowed). The default viewer is unrestricted (the CLI, admins)."""

    may_act_for: Callable[[str], bool] = lambda _: True
    sources: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    def sees(self, row: GoldenSetRow) -> bool:
        """True when every query's user, the set's sources and kinds are within reach."""
        if self.sources is not None and not (row.sources and set(row.sources) <= self.sources):
            return False
        for query in row.queries:
            user = query.get("user_id") or EVAL_USER
            if user != EVAL_USER and not self.may_act_for(user):
                return False
            kinds = set(query.get("kinds") or ())
            if self.kinds is not None and not (kinds and kinds <= self.kinds):
                return False
        return True


UNRESTRICTED = Viewer()


def principals_of(engine: Engine, user_id: str) -> frozenset[str]:
    """What a golden-set query's user may see (``public`` only for :data:`EVAL_USER`)."""
    if user_id == EVAL_USER:
        return frozenset({PUBLIC})
    return effective_principals(engine, user_id=user_id)


@dataclass(frozen=True, slots=True)
class GoldenQuery:
    """One judged query; ``user_id`` decides what the run may see (default: public only)."""

    id: str
    text: str
    user_id: str = "eval"
    kinds: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "user_id": self.user_id,
                "kinds": list(self.kinds)}


def _invalid(field: str, message: str, **extra: Any) -> InvalidInput:
    return InvalidInput(message, details=[{"field": field, "message": message, **extra}])


def parse_beir_queries(data: bytes) -> list[GoldenQuery]:
    """``queries.jsonl``: one ``{"_id", "text"}`` object per line."""
    queries = []
    for number, line in enumerate(_text(data, "queries").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _invalid("queries", f"queries line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
            raise _invalid("queries", f"queries line {number}: needs '_id' and 'text'")
        queries.append(GoldenQuery(id=str(obj["_id"]), text=obj["text"]))
    return queries


def parse_beir_qrels(data: bytes) -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv``: ``query-id  corpus-id  score``, header line optional."""
    qrels: dict[str, dict[str, int]] = {}
    for number, row in enumerate(csv.reader(io.StringIO(_text(data, "qrels")), delimiter="\t"),
                                 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if number == 1 and row[-1].strip().lower() == "score":
            continue
        if len(row) != 3 or not row[2].strip().lstrip("-").isdigit():
            raise _invalid("qrels", f"qrels line {number}: expected 'query-id<TAB>corpus-id"
                                    "<TAB>integer score'")
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = int(row[2])
    return qrels


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid(field, f"{field} is not UTF-8") from exc


def validate(engine: Engine, *, name: str, queries: list[GoldenQuery],
             qrels: dict[str, dict[str, int]], sources: list[str],
             viewer: Viewer = UNRESTRICTED) -> None:
    """Raise InvalidInput naming the field at the first problem (PermissionDenied for a
    user the key may not act for); writes nothing."""
    if not name.strip() or len(name) > 200:
        raise _invalid("name", "name must be 1-200 characters")
    if not queries:
        raise _invalid("queries", "a golden set needs at least one query")
    if len(queries) > MAX_QUERIES:
        raise _invalid("queries", f"at most {MAX_QUERIES} queries per set")
    seen: set[str] = set()
    for index, query in enumerate(queries):
        if not query.id or query.id in seen:
            raise _invalid(f"queries.{index}.id", f"query id {query.id!r} is empty or repeated")
        if not query.text.strip():
            raise _invalid(f"queries.{index}.text", "query text must not be blank")
        unknown_kinds = set(query.kinds) - set(KINDS)
        if unknown_kinds:
            raise _invalid(f"queries.{index}.kinds", f"unknown kinds {sorted(unknown_kinds)}")
        if query.user_id != EVAL_USER and not viewer.may_act_for(query.user_id):
            raise PermissionDenied(f"this API key may not act for user {query.user_id!r}",
                                   details=[{"field": f"queries.{index}.user_id"}])
        if viewer.kinds is not None and not set(query.kinds) <= viewer.kinds:
            raise _invalid(f"queries.{index}.kinds", "kinds outside this key's scope")
        seen.add(query.id)
    for qid, judged in qrels.items():
        if qid not in seen:
            raise _invalid("qrels", f"judgments for unknown query id {qid!r}")
        if any(not isinstance(g, int) or isinstance(g, bool) or g < 0 for g in judged.values()):
            raise _invalid(f"qrels.{qid}", "grades must be integers >= 0")
    unjudged = [q.id for q in queries if not any(g > 0 for g in qrels.get(q.id, {}).values())]
    if unjudged:
        raise _invalid("qrels", "every query needs at least one relevant document (grade > 0)",
                       queries=unjudged[:20])
    if viewer.sources is not None and not set(sources) <= viewer.sources:
        raise _invalid("sources", "sources outside this key's scope")
    unknown: set[str] = set()
    for query in queries:
        judged_ids = sorted(qrels.get(query.id, {}))
        unknown |= set(judged_ids) - _visible_ids(engine, judged_ids, sources, query)
    if unknown:
        # One answer for an id that does not exist and one the query's user may not see.
        raise _invalid("qrels", f"{len(unknown)} judged document(s) are not in the live "
                                "index or not visible to their query's user",
                       unknown_ids=sorted(unknown)[:20])


def _visible_ids(engine: Engine, ids: list[str], sources: list[str],
                 query: GoldenQuery) -> set[str]:
    """Of ``ids``, those live in ``sources`` (any if empty), of the query's kinds (any if
    none) and visible to the query's user."""
    principals = principals_of(engine, query.user_id)
    found: set[str] = set()
    with Session(engine) as session:
        for start in range(0, len(ids), 500):
            statement = select(DocumentRow.source_id, DocumentRow.acl).where(
                col(DocumentRow.source_id).in_(ids[start:start + 500]),
                DocumentRow.deleted == False)  # noqa: E712
            if sources:
                statement = statement.where(col(DocumentRow.source).in_(sources))
            if query.kinds:
                statement = statement.where(col(DocumentRow.kind).in_(list(query.kinds)))
            found.update(source_id for source_id, acl in session.exec(statement)
                         if not principals.isdisjoint(acl))
    return found


def create_golden_set(engine: Engine, *, name: str, queries: list[GoldenQuery],
                      qrels: dict[str, dict[str, int]], sources: list[str] | None = None,
                      description: str = "", origin: str = "json",
                      viewer: Viewer = UNRESTRICTED) -> GoldenSetRow:
    """Validate, then store the set in one transaction; 409 when the name is taken. A
    scoped ``viewer``'s sources and kinds fill in what the set leaves open."""
    sources = sorted(set(sources or []))
    if viewer.sources is not None and not sources:
        sources = sorted(viewer.sources)
    if viewer.kinds is not None:
        queries = [q if q.kinds else GoldenQuery(q.id, q.text, q.user_id,
                                                 tuple(sorted(viewer.kinds)))
                   for q in queries]
    validate(engine, name=name, queries=queries, qrels=qrels, sources=sources,
             viewer=viewer)
    row = GoldenSetRow(id=secrets.token_hex(8), name=name.strip(), description=description,
                       origin=origin, sources=sources, queries=[q.as_json() for q in queries],
                       qrels={q: dict(j) for q, j in qrels.items()})
    try:
        with session_scope(engine) as session:
            if session.exec(select(GoldenSetRow).where(GoldenSetRow.name == row.name)).first():
                raise Conflict(f"a golden set named {row.name!r} exists",
                               details=[{"field": "name"}])
            session.add(row)
    except IntegrityError as exc:  # a concurrent create of the same name
        raise Conflict(f"a golden set named {row.name!r} exists",
                       details=[{"field": "name"}]) from exc
    return row


def list_golden_sets(engine: Engine, viewer: Viewer = UNRESTRICTED) -> list[GoldenSetRow]:
    """The sets ``viewer`` sees, oldest first."""
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(select(GoldenSetRow).order_by(col(GoldenSetRow.created_at)))
        return [r for r in rows if viewer.sees(r)]


def get_golden_set(engine: Engine, ref: str, viewer: Viewer = UNRESTRICTED) -> GoldenSetRow:
    """A set by id or by name, or NotFound (also for a set ``viewer`` does not see)."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(GoldenSetRow, ref) or session.exec(
            select(GoldenSetRow).where(GoldenSetRow.name == ref)).first()
    if row is None or not viewer.sees(row):
        raise NotFound(f"golden set {ref!r} not found")
    return row


def queries_of(row: GoldenSetRow) -> list[GoldenQuery]:
    return [GoldenQuery(id=q["id"], text=q["text"], user_id=q.get("user_id") or EVAL_USER,
                        kinds=tuple(q.get("kinds") or ())) for q in row.queries]


def pin_baseline(engine: Engine, *, golden_set: str, run_id: str,
                 viewer: Viewer = UNRESTRICTED) -> GoldenSetRow:
    """Make ``run_id`` (a run of this set) the baseline later runs are compared with."""
    with session_scope(engine) as session:
        row = session.get(GoldenSetRow, golden_set) or session.exec(
            select(GoldenSetRow).where(GoldenSetRow.name == golden_set)).first()
        if row is None or not viewer.sees(row):
            raise NotFound(f"golden set {golden_set!r} not found")
        run = session.get(EvalRunRow, run_id)
        if run is None:
            raise NotFound(f"eval run {run_id!r} not found")
        if run.golden_set_id != row.id:
            raise _invalid("run_id", f"run {run_id!r} is not a run of golden set {row.name!r}")
        row.baseline_run_id = run.id
        row.baseline_pinned_at = utcnow()
        session.add(row)
    return row


def golden_set_json(row: GoldenSetRow, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id, "name": row.name, "description": row.description, "origin": row.origin,
        "created_at": iso(row.created_at), "sources": row.sources,
        "queries": len(row.queries), "judgments": sum(len(j) for j in row.qrels.values()),
        "baseline_run_id": row.baseline_run_id,
        "baseline_pinned_at": iso(row.baseline_pinned_at) if row.baseline_pinned_at else None,
    }
    if full:
        out["query_list"] = row.queries
        out["qrels"] = row.qrels
    return out
