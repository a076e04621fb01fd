"""``python -m bench.connectors``: pull throughput of the imap, hubspot and salesforce sources.

IMAP runs against a private real Dovecot; HubSpot and Salesforce against the loopback
fakes of their APIs used by the tests (their figures measure the connector and HTTP
stack, not the SaaS). Each source: a full pull, a no-op incremental pull, ``list_ids``,
then ``run_sync`` into a fresh runtime (embedding included) and an unchanged re-sync.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.connectors.fake_saas import FakeHubSpot, FakeSalesforce
from tests.connectors.imap_server import DovecotServer

from contextd.connectors.base import Connector
from contextd.connectors.registry import build_connector
from contextd.core.settings import Settings
from contextd.runtime import Runtime
from contextd.sync.pull import run_sync

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WORDS = ("renewal", "discount", "forklift", "lidar", "pallet", "invoice", "warehouse",
         "freight", "contract", "pilot", "battery", "conveyor", "audit", "payroll", "robot",
         "shipment", "quota", "forecast", "support", "outage")


def sentence(n: int) -> str:
    return " ".join(WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(40)) + f" ref {n}."


def measure(connector: Connector, make_runtime: Callable[[], Runtime]) -> dict[str, Any]:
    started = time.perf_counter()
    batches = list(connector.pull(None))
    full = time.perf_counter() - started
    cursor = next(b.cursor for b in reversed(batches) if b.cursor is not None)
    pulled = sum(len(b.records) for b in batches)
    started = time.perf_counter()
    again = sum(len(b.records) for b in connector.pull(cursor))
    noop = time.perf_counter() - started
    started = time.perf_counter()
    listed = len(connector.list_ids())
    list_seconds = time.perf_counter() - started
    runtime = make_runtime()
    try:
        first = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
        second = run_sync(connector, ingestor=runtime.ingestor, engine=runtime.engine)
    finally:
        runtime.close()
    return {"records": pulled, "full_pull_s": round(full, 3),
            "records_per_s": round(pulled / full, 1), "noop_pull_s": round(noop, 3),
            "noop_records": again, "list_ids": listed, "list_ids_s": round(list_seconds, 3),
            "run_sync_s": round(first.seconds, 2), "chunks_embedded": first.stats.chunks_embedded,
            "resync_s": round(second.seconds, 3),
            "resync_chunks_embedded": second.stats.chunks_embedded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="records per source")
    args = parser.parse_args()
    n = args.n
    tmp = Path(tempfile.mkdtemp(prefix="contextd-bench-connectors-"))
    count = [0]

    def make_runtime() -> Runtime:
        count[0] += 1
        runtime = Runtime(Settings(data_dir=tmp / f"data{count[0]}"))
        runtime.migrate()
        return runtime

    results: dict[str, Any] = {}
    try:
        measure_all(n, make_runtime, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))


def measure_all(n: int, make_runtime: Callable[[], Runtime], results: dict[str, Any]) -> None:
    user = "erin@northwind.example"
    with DovecotServer({user: "pw"}) as dovecot:
        conn = dovecot.client(user)
        for i in range(n):
            raw = (f"From: alice@acme.example\r\nTo: {user}\r\nSubject: note {i}\r\n"
                   f"Message-ID: <b{i}@acme.example>\r\nDate: Tue, 10 Nov 2026 09:05:00 "
                   f"+0000\r\n\r\n{sentence(i)}\r\n").encode()
            conn.append("INBOX", None, None, raw)
        conn.logout()
        results["imap"] = measure(build_connector("mail", "imap", {
            "host": "127.0.0.1", "port": dovecot.port, "security": "none", "user": user,
            "password": "pw"}), make_runtime)
    with FakeHubSpot() as hubspot:
        hubspot.owners = [{"id": "1", "email": "a@x.example", "teams": []}]
        for i in range(n):
            hubspot.put("deals", str(i), T0 + timedelta(seconds=i), dealname=f"Deal {i}",
                        description=sentence(i), hubspot_owner_id="1")
        results["hubspot"] = measure(build_connector("crm", "hubspot", {
            "access_token": hubspot.token, "base_url": hubspot.base_url,
            "object_types": ["deals"]}), make_runtime)
    with FakeSalesforce(page_size=2000) as salesforce:
        salesforce.put("User", "005000000000001AAA", T0, Username="a@x.example", UserRole=None)
        for i in range(n):
            salesforce.put("Opportunity", f"006{i:015d}", T0 + timedelta(seconds=i),
                           Name=f"Opp {i}", Description=sentence(i),
                           OwnerId="005000000000001AAA")
        results["salesforce"] = measure(build_connector("sf", "salesforce", {
            "instance_url": salesforce.base_url, "access_token": salesforce.token,
            "objects": ["Opportunity"]}), make_runtime)


if __name__ == "__main__":
    main()
