"""``sql``: rows of a table or query in any database SQLAlchemy can reach.

Incremental by an ``updated_at`` column: each pull asks for ``updated_at >= cursor`` (never
``>``, so a row committed late with the cursor's exact timestamp is not missed) and drops
the rows the cursor already holds (``seen``: the keys at the cursor's timestamp). Inside a
pull, pages follow ``(updated_at, key)`` keyset order, and every page is a checkpointed
batch. ``list_ids`` selects the key column only, for deletion reconciliation; ``fetch``
re-reads quarantined keys.

Text comes from ``text_template`` (``str.format`` over the row's columns), the ACL from
``acl_column`` (an array, or principals separated by commas or spaces) or ``default_acl``;
a row with neither fails closed as a RecordFailure.

The source is only read: ``query`` must be one SELECT (a second statement is refused when
the config is saved, see :mod:`contextd.connectors.sqltext`), and every connection is
read-only (PostgreSQL ``default_transaction_read_only`` plus ``SET TRANSACTION READ ONLY``
at each begin, SQLite ``PRAGMA query_only``, MySQL ``SET SESSION TRANSACTION READ ONLY``),
so even a function with side effects cannot write. Use a read-only database role too: it
is the only guard for other databases. Statements time out after
``statement_timeout_seconds`` (PostgreSQL, server side).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from sqlalchemy import bindparam, create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from contextd.connectors.base import ConnectorConfig, error_text, to_utc
from contextd.connectors.filesystem import valid_principals
from contextd.connectors.limits import OutboundPolicy
from contextd.connectors.sqltext import single_select
from contextd.core.errors import ConfigError, ContextdError, SourceAuthError, TransientSourceError
from contextd.core.types import (
    Batch,
    Kind,
    RecordFailure,
    SourceRecord,
    Tombstone,
    is_valid_principal,
)

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TABLE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
_AUTH_SQLSTATES = {"28000", "28P01"}  # invalid authorization / invalid password
_AUTH_SIGNS = re.compile(r"authentication failed|access denied|no password supplied"
                         r"|role \".*\" does not exist")  # an unknown user is an auth error
_IDS_PER_QUERY = 500


def template_fields(template: str) -> set[str]:
    """Column names a ``str.format`` template refers to; ValueError when it is malformed."""
    names = set()
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is not None:
            if not field_name or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", field_name):
                raise ValueError("template fields must be column names, like {body}")
            names.add(field_name)
    return names


class SqlConfig(ConnectorConfig):
    # The URL holds the password: its host changes only with the URL given again in full.
    endpoint_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: SecretStr = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://u:p@h/db")
    table: str | None = Field(None, pattern=_TABLE,
        description="The table (or ``schema.table``) to read; or give query.")
    query: str | None = Field(None, min_length=1,
                              description="One SELECT used as a subquery instead of a table")
    key_column: str = Field(pattern=_IDENT,
        description="Column holding each row's stable id.")
    updated_at_column: str = Field(pattern=_IDENT,
        description="Column holding each row's last change (the incremental cursor).")
    text_template: str = Field(min_length=1,
        description="Text of a record, with ``{column}`` placeholders.")
    title_column: str | None = Field(None, pattern=_IDENT,
        description="Column used as the record title.")
    uri_template: str | None = Field(None,
        description="Link of a record, with ``{column}`` placeholders.")
    acl_column: str | None = Field(None, pattern=_IDENT,
        description="Column holding the row's principals (comma or space separated).")
    default_acl: list[str] | None = Field(None, min_length=1,
        description="Principals of rows without an acl_column value.")
    kind: Kind = Field("document",
        description="Kind of the records: document, email or crm.")
    connect_timeout_seconds: int = Field(10, ge=1, le=300,
        description="Seconds to wait for a connection.")
    statement_timeout_seconds: int = Field(300, ge=1, le=86_400,
        description="Longest a source query may run.")

    @field_validator("url")
    @classmethod
    def _parsable(cls, value: SecretStr) -> SecretStr:
        try:
            make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a SQLAlchemy URL (dialect+driver://user:pass@host/db)") from None
        return value

    @field_validator("query", mode="after")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) == (info.data.get("table") is None):
            raise ValueError("give exactly one of table or query")
        if value is not None:
            single_select(value)
        return value

    @field_validator("text_template", "uri_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @field_validator("default_acl", mode="after")
    @classmethod
    def _acl(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            if info.data.get("acl_column") is None:
                raise ValueError("give acl_column or default_acl (records are never "
                                 "public by accident)")
            return None
        return valid_principals(value)

    model_config = {**ConnectorConfig.model_config,  # check the pair even when query is unset
                    "validate_default": True}


_QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_MESSAGE_LIMIT = 200


def sanitised(message: str, names: set[str]) -> str:
    """A driver message without quoted values, unless they are names the config uses:
    ``relation "notes_missing" does not exist`` stays, a row value quoted in a type error
    does not (it would show source data to whoever reads ``last_error``)."""
    def keep(found: re.Match[str]) -> str:
        inner = found.group(1) if found.group(1) is not None else found.group(2)
        return found.group(0) if inner in names else "\"…\""
    return _QUOTED.sub(keep, message)[:_MESSAGE_LIMIT]


def _source_error(exc: SQLAlchemyError, what: str,
                  names: set[str] | frozenset[str] = frozenset()) -> ContextdError:
    """Map a driver error: auth -> SourceAuthError, bad SQL -> ConfigError, else transient."""
    orig = getattr(exc, "orig", None)
    message = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else what
    message = sanitised(message, set(names))
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    lowered = message.lower()
    if sqlstate in _AUTH_SQLSTATES or _AUTH_SIGNS.search(lowered):
        return SourceAuthError(f"{what}: credentials rejected: {message}")
    if sqlstate == "25006" or "readonly database" in lowered:
        return ConfigError(f"{what}: the query tried to write, and sources are only read: "
                           f"{message}", details=[{"field": "config.query",
                                                   "message": "writes are refused"}])
    if sqlstate.startswith("42") or sqlstate.startswith("3D") or "no such table" in lowered \
            or "no such column" in lowered or "syntax error" in lowered:
        return ConfigError(f"{what}: {message}",
                           details=[{"field": "config.table", "message": message}])
    return TransientSourceError(f"{what}: {message}")


def _cursor_value(value: Any) -> Any:
    """How a cursor column value is kept in JSON."""
    if isinstance(value, datetime | date):
        return {"iso": value.isoformat()}
    return value


def _from_cursor(value: Any) -> Any:
    if isinstance(value, dict) and "iso" in value:
        parsed = datetime.fromisoformat(value["iso"])
        return parsed
    return value


def parse_acl(value: Any) -> list[str]:
    """Principals from an array or a comma/space separated string; ValueError if invalid."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        stripped = value.strip()
        items = json.loads(stripped) if stripped.startswith("[") else re.split(r"[,\s]+",
                                                                              stripped)
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"ACL must be a list or a string, not {type(value).__name__}")
    principals = [str(p).strip() for p in items if str(p).strip()]
    bad = [p for p in principals if not is_valid_principal(p)]
    if bad:
        raise ValueError(f"invalid principals {bad}: use public, user:<id> or group:<id>")
    return principals


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433,
                  "oracle": 1521}


def _read_only(engine: Engine, backend: str) -> None:
    """Make every connection of ``engine`` unable to write, whatever the query calls."""
    if backend == "postgresql":
        @event.listens_for(engine, "begin")
        def _pg_begin(conn: Connection) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif backend == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()
    elif backend in ("mysql", "mariadb"):
        @event.listens_for(engine, "connect")
        def _mysql_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()


class _Blank(dict[str, Any]):
    """Row values for templates: NULL renders as an empty string."""

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


class SqlConnector:
    """Rows of ``table`` (or ``query``) as records, incremental by ``updated_at_column``."""

    kind: ClassVar[str] = "sql"
    Config: ClassVar[type[SqlConfig]] = SqlConfig

    def __init__(self, name: str, config: SqlConfig, *,
                 outbound: OutboundPolicy | None = None) -> None:
        self.name = name
        self.config = config
        self.outbound = outbound
        self._engine: Engine | None = None

    def targets(self) -> list[tuple[str, str, Any]]:
        url = make_url(self.config.url.get_secret_value())
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            return [] if database in ("", ":memory:") else [("url", "path", database)]
        if not url.host:
            return []  # a local socket
        return [("url", "host", (url.host, url.port or _DEFAULT_PORTS.get(
            url.get_backend_name(), 0)))]

    def _names(self) -> set[str]:
        """Identifiers the config names (kept in sanitised error messages)."""
        c = self.config
        found = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", f"{c.table or ''} {c.query or ''}"))
        return found | self._columns_needed() | {p for p in (c.table or "").split(".") if p}

    # -- plumbing ------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = make_url(self.config.url.get_secret_value())
            backend = url.get_backend_name()
            connect_args: dict[str, Any] = {}
            if backend == "postgresql":
                connect_args["connect_timeout"] = self.config.connect_timeout_seconds
                connect_args["options"] = (
                    "-c default_transaction_read_only=on -c statement_timeout="
                    f"{self.config.statement_timeout_seconds * 1000}")
                address = self._checked_address(url)
                if address:
                    connect_args["hostaddr"] = address  # connect where the check looked
            elif backend == "sqlite":
                connect_args["timeout"] = self.config.connect_timeout_seconds
            else:
                self._checked_address(url)
            try:
                engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True,
                                       pool_timeout=self.config.connect_timeout_seconds)
            except (NoSuchModuleError, ImportError) as exc:
                raise ConfigError(f"{self.name}: no driver for this URL: {exc}",
                                  details=[{"field": "config.url",
                                            "message": "driver not installed"}]) from None
            _read_only(engine, backend)
            self._engine = engine
        return self._engine

    def _checked_address(self, url: URL) -> str | None:
        """The checked address of the URL's host (None without a host or a policy)."""
        if self.outbound is None or not url.host:
            return None
        port = url.port or _DEFAULT_PORTS.get(url.get_backend_name(), 0)
        return str(self.outbound.connectable(url.host, port, source=self.name)[0])

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _q(self, ident: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(ident)

    def _base(self) -> str:
        if self.config.table is not None:
            return ".".join(self._q(part) for part in self.config.table.split("."))
        return f"({self.config.query})"

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise _source_error(exc, f"{self.name}: cannot connect", self._names()) from None

    def _columns_needed(self) -> set[str]:
        c = self.config
        needed = {c.key_column, c.updated_at_column, *template_fields(c.text_template)}
        needed |= template_fields(c.uri_template) if c.uri_template else set()
        needed |= {x for x in (c.title_column, c.acl_column) if x}
        return needed

    # -- protocol ------------------------------------------------------------------------

    def check(self) -> None:
        """Connect, run the select with no rows, and check every named column exists."""
        with self._connect() as conn:
            try:
                result = conn.execute(text(f"SELECT * FROM {self._base()} AS src WHERE 1 = 0"))
                columns = set(result.keys())
            except SQLAlchemyError as exc:
                raise _source_error(exc, f"{self.name}: cannot read the source",
                                    self._names()) from None
        missing = sorted(self._columns_needed() - columns)
        if missing:
            raise ConfigError(f"{self.name}: columns not in the source: {missing}",
                              details=[{"field": "config", "message": f"unknown columns "
                                        f"{missing}; the source has {sorted(columns)}"}])

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Pages of rows with ``updated_at >= cursor``, each page a checkpointed batch."""
        c = self.config
        u, k = self._q(c.updated_at_column), self._q(c.key_column)
        since = _from_cursor((cursor or {}).get("updated_at"))
        seen = {str(i) for i in (cursor or {}).get("seen", [])}
        mark, mark_ids = since, set(seen)
        last: tuple[Any, Any] | None = None
        saved: Mapping[str, Any] | None = cursor
        with self._connect() as conn:
            while True:
                params: dict[str, Any] = {"n": c.batch_size}
                if last is not None:
                    where = f"({u} > :lu OR ({u} = :lu AND {k} > :lk))"
                    params.update(lu=last[0], lk=last[1])
                elif since is not None:
                    where = f"{u} >= :since"
                    params["since"] = since
                else:
                    where = f"{u} IS NOT NULL"
                sql = (f"SELECT * FROM {self._base()} AS src WHERE {where} "
                       f"ORDER BY {u}, {k} LIMIT :n")
                try:
                    rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
                except SQLAlchemyError as exc:
                    raise _source_error(exc, f"{self.name}: query failed",
                                    self._names()) from None
                records: list[SourceRecord] = []
                failures: list[RecordFailure] = []
                for row in rows:
                    source_id, stamp = str(row[c.key_column]), row[c.updated_at_column]
                    if since is not None and stamp == since and source_id in seen:
                        continue  # already ingested at the cursor's timestamp
                    if stamp == mark:
                        mark_ids.add(source_id)
                    else:
                        mark, mark_ids = stamp, {source_id}
                    self._map(row, records, failures)
                if rows:
                    last = (rows[-1][c.updated_at_column], rows[-1][c.key_column])
                new_cursor = ({"updated_at": _cursor_value(mark), "seen": sorted(mark_ids)}
                              if mark is not None else None)
                if records or failures or new_cursor != saved:
                    yield Batch(records=records, failures=failures, cursor=new_cursor)
                    saved = new_cursor
                if len(rows) < c.batch_size:
                    return

    def list_ids(self) -> set[str]:
        sql = f"SELECT {self._q(self.config.key_column)} AS k FROM {self._base()} AS src"
        with self._connect() as conn:
            try:
                return {str(v) for v in conn.execute(text(sql)).scalars()}
            except SQLAlchemyError as exc:
                raise _source_error(exc, f"{self.name}: listing keys failed",
                                    self._names()) from None

    def fetch(self, source_ids: Sequence[str]) -> Batch:
        """Re-read ``source_ids`` (quarantined earlier); ids gone at the source are tombstones."""
        c = self.config
        key = f"CAST({self._q(c.key_column)} AS VARCHAR(1000))"
        sql = text(f"SELECT * FROM {self._base()} AS src WHERE {key} IN :ids").bindparams(
            bindparam("ids", expanding=True))
        records: list[SourceRecord] = []
        failures: list[RecordFailure] = []
        found: set[str] = set()
        wanted = list(dict.fromkeys(source_ids))
        with self._connect() as conn:
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                try:
                    rows = conn.execute(sql, {"ids": wanted[start:start + _IDS_PER_QUERY]})
                    for row in rows.mappings():
                        found.add(str(row[c.key_column]))
                        self._map(dict(row), records, failures)
                except SQLAlchemyError as exc:
                    raise _source_error(exc, f"{self.name}: fetch failed",
                                    self._names()) from None
        gone = [Tombstone(self.name, i) for i in wanted if i not in found]
        return Batch(records=records, tombstones=gone, failures=failures)

    # -- mapping -------------------------------------------------------------------------

    def _map(self, row: dict[str, Any], records: list[SourceRecord],
             failures: list[RecordFailure]) -> None:
        source_id = str(row[self.config.key_column])
        try:
            records.append(self.to_record(row))
        except Exception as exc:  # one bad row is a failure value; the pull goes on
            raw = json.dumps(row, default=str)
            failures.append(RecordFailure(self.name, source_id, error_text(exc), raw))

    def to_record(self, row: Mapping[str, Any]) -> SourceRecord:
        """One row as a record; any error here quarantines the row."""
        c = self.config
        values = _Blank({k: ("" if v is None else v) for k, v in row.items()})
        body = c.text_template.format_map(values).strip()
        if not body:
            raise ValueError("text_template rendered an empty text")
        acl = parse_acl(row.get(c.acl_column)) if c.acl_column else []
        if not acl:
            if c.default_acl is None:
                raise ValueError(f"no ACL in column {c.acl_column!r} and no default_acl")
            acl = list(c.default_acl)
        key = str(row[c.key_column])
        title = str(row.get(c.title_column) or "") if c.title_column else ""
        return SourceRecord(
            source=self.name, source_id=key, kind=c.kind, title=title or key, text=body,
            updated_at=to_utc(row[c.updated_at_column]), updated_at_source="column",
            acl=tuple(acl),
            uri=c.uri_template.format_map(values) if c.uri_template else "",
            entity_key=f"{self.name}:{key}",
            fields={k: v for k, v in row.items()
                    if isinstance(v, str | int | float | bool) and k != c.acl_column},
        )
