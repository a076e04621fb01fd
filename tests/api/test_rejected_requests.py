"""Context calls refused before a key is known write no SQL row; they are counted in
``/metrics`` (``contextd_requests_rejected_total``)."""

from __future__ import annotations

import re

from sqlalchemy import inspect, text

from contextd.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import keys

CALLS = 1000


def _row_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.engine.connect() as conn:
        return {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0)
                for t in inspect(conn).get_table_names()}


def _rejected(metrics: str, reason: str) -> float:
    found = re.search(rf'^contextd_requests_rejected_total\{{reason="{reason}"\}} (\S+)$',
                      metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_thousand_bad_keys_write_no_row_and_are_counted(runtime: Runtime) -> None:
    k = keys(runtime.engine)
    body = {"query": "travel per diem", "user_id": "alice"}
    with LiveServer(runtime) as server, server.client(k["analyst"]) as analyst:
        before_metric = _rejected(analyst.get("/metrics").text, "bad_key")
        before = _row_counts(runtime)
        clients = [server.client(bad) for bad in
                   (None, "ctxd_nope_nope", "not-a-key", f"{k['agent']}x")]
        try:
            for n in range(CALLS):
                assert clients[n % len(clients)].post("/v1/context",
                                                      json=body).status_code == 401
        finally:
            for client in clients:
                client.close()
        after = _row_counts(runtime)
        metrics = analyst.get("/metrics").text
    assert after == before, {t: (before[t], after[t]) for t in before if before[t] != after[t]}
    assert _rejected(metrics, "bad_key") - before_metric == CALLS
