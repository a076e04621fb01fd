"""The ``sql`` connector against the machine's real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from contextd.connectors.registry import build_connector
from contextd.connectors.sql import SqlConnector
from contextd.core.errors import ConfigError, SourceAuthError
from contextd.core.types import Batch
from tests.pg import scratch_database


@pytest.fixture
def pg() -> Iterator[tuple[str, Engine]]:
    with scratch_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE TABLE notes (id int PRIMARY KEY, title text, body text, acl text, "
                "updated_at timestamptz NOT NULL)"))
            conn.execute(text(
                "INSERT INTO notes SELECT g, 'Note ' || g, 'Body of note ' || g, "
                "'group:sales', timestamptz '2026-01-01 00:00+00' + (g / 3) * interval '1h' "
                "FROM generate_series(1, 10) g"))
        yield url, engine
        engine.dispose()


def make(url: str, **overrides: Any) -> SqlConnector:
    config: dict[str, Any] = {"url": url, "table": "notes", "key_column": "id",
                              "updated_at_column": "updated_at",
                              "text_template": "{title}\n\n{body}", "title_column": "title",
                              "acl_column": "acl", "batch_size": 4, **overrides}
    connector = build_connector("notes", "sql", config)
    assert isinstance(connector, SqlConnector)
    return connector


def drain(batches: Iterator[Batch]) -> tuple[list[str], list[str], dict[str, Any] | None]:
    ids: list[str] = []
    failed: list[str] = []
    cursor = None
    for batch in batches:
        ids += [r.source_id for r in batch.records]
        failed += [f.source_id for f in batch.failures]
        cursor = dict(batch.cursor) if batch.cursor is not None else cursor
    return ids, failed, cursor


def test_full_then_incremental_pull_with_same_timestamp_boundary(pg: tuple[str, Engine]) -> None:
    url, engine = pg
    connector = make(url)
    connector.check()
    ids, failed, cursor = drain(connector.pull(None))
    assert ids == [str(i) for i in range(1, 11)] and not failed
    assert drain(connector.pull(cursor))[0] == []  # nothing changed: nothing pulled
    with engine.begin() as conn:
        # A row committed late with exactly the cursor's timestamp (the boundary case that
        # a ">" cursor misses), a changed row, and a new later row.
        conn.execute(text("INSERT INTO notes VALUES (11, 'Late', 'late row', 'public', "
                          "(SELECT max(updated_at) FROM notes))"))
        conn.execute(text("UPDATE notes SET body = 'changed', updated_at = "
                          "timestamptz '2026-02-01 00:00+00' WHERE id = 2"))
    again, _, cursor2 = drain(connector.pull(cursor))
    assert again == ["11", "2"]
    assert drain(connector.pull(cursor2))[0] == []
    record = next(r for b in connector.pull(None) for r in b.records if r.source_id == "2")
    assert record.text == "Note 2\n\nchanged" and record.acl == ("group:sales",)
    assert record.updated_at.isoformat() == "2026-02-01T00:00:00+00:00"
    connector.close()


def test_bad_row_is_a_failure_and_list_ids_and_fetch(pg: tuple[str, Engine]) -> None:
    url, engine = pg
    with engine.begin() as conn:
        conn.execute(text("UPDATE notes SET acl = 'not-a-principal' WHERE id = 5"))
        conn.execute(text("DELETE FROM notes WHERE id = 9"))
    connector = make(url)
    ids, failed, _ = drain(connector.pull(None))
    assert failed == ["5"] and "5" not in ids and len(ids) == 8
    assert connector.list_ids() == {str(i) for i in range(1, 11)} - {"9"}
    with engine.begin() as conn:
        conn.execute(text("UPDATE notes SET acl = 'user:ann' WHERE id = 5"))
    fetched = connector.fetch(["5", "9"])
    assert [r.source_id for r in fetched.records] == ["5"]
    assert [t.source_id for t in fetched.tombstones] == ["9"]
    connector.close()


def test_query_source_and_default_acl(pg: tuple[str, Engine]) -> None:
    url, _ = pg
    connector = make(url, table=None, query="SELECT id, title, body, updated_at FROM notes "
                     "WHERE id <= 3", acl_column=None, default_acl=["group:ops"])
    connector.check()
    records = [r for b in connector.pull(None) for r in b.records]
    assert [r.source_id for r in records] == ["1", "2", "3"]
    assert all(r.acl == ("group:ops",) for r in records)
    connector.close()


def test_unknown_user_is_an_auth_error_and_bad_table_or_column_a_config_error(
        pg: tuple[str, Engine]) -> None:
    url, _ = pg
    bad_user = url.replace("postgres@", "nobody_here@")
    with pytest.raises(SourceAuthError, match="credentials rejected"):
        make(bad_user).check()
    with pytest.raises(ConfigError, match="notes_missing"):
        make(url, table="notes_missing").check()
    with pytest.raises(ConfigError, match="bodyx"):
        make(url, text_template="{bodyx}").check()


@pytest.mark.parametrize(("config", "field"), [
    ({"table": "notes"}, "config.url"),
    ({"url": "not a url", "table": "t"}, "config.url"),
    ({"url": "sqlite://", "table": "t; drop"}, "config.table"),
    ({"url": "sqlite://"}, "config.query"),
    ({"url": "sqlite://", "table": "t", "acl_column": None}, "config.default_acl"),
    ({"url": "sqlite://", "table": "t", "text_template": "{"}, "config.text_template"),
    ({"url": "sqlite://", "table": "t", "batch_size": "many"}, "config.batch_size"),
])
def test_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    base = {"key_column": "id", "updated_at_column": "updated_at", "text_template": "{b}",
            "acl_column": "acl"}
    with pytest.raises(ConfigError) as info:
        build_connector("x", "sql", {**base, **config})
    assert field in [d["field"] for d in info.value.details]
    assert "not a url" not in str(info.value.details)
