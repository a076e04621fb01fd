"""Local fakes of two SaaS APIs this machine cannot reach: HubSpot CRM v3 and Salesforce REST.

These are fakes of unreachable SaaS APIs, served over real HTTP on a loopback port
(``http.server`` in a thread). They follow each API's documented request and response
shapes: HubSpot's ``POST /crm/v3/objects/{type}/search`` (filterGroups, sorts, ``after``
paging, ``{"results", "paging": {"next": {"after"}}}``, the 10,000-result search window),
the object list endpoint with ``archived=true``, ``/crm/v3/owners``, its error bodies
(``{"status": "error", "message", "category"}``); Salesforce's ``/query`` and ``/queryAll``
(``{"totalSize", "done", "nextRecordsUrl", "records": [{"attributes": ...}]}``), the
client-credentials token endpoint and its error arrays (``[{"message", "errorCode"}]``).
Faults are injected per request: 429 with ``Retry-After``, 503, and 401 for a bad token.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Response = tuple[int, dict[str, str], Any]


@dataclass
class Fault:
    """One injected answer; status 0 closes the connection without answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class FakeApi:
    """The HTTP plumbing: auth check, injected faults, a log of requests."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with api.lock:
                    api.requests.append((method, parts.path))
                    fault = api.faults.pop(0) if api.faults else None
                if fault is not None and fault.status == 0:  # drop the connection unanswered
                    self.close_connection = True
                    return
                if fault is not None:
                    status, headers, body = fault.status, fault.headers, fault.body
                else:
                    status, headers, body = api.route(method, parts.path, query,
                                                      dict(self.headers), raw)
                data = (body if isinstance(body, bytes)
                        else json.dumps(body).encode() if body is not None else b"")
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              raw: bytes) -> Response:
        raise NotImplementedError


def iso_ms(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: str) -> datetime:
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- HubSpot ---------------------------------------------------------------------------------

HUBSPOT_MODIFIED = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate",
                    "deals": "hs_lastmodifieddate", "notes": "hs_lastmodifieddate"}


class FakeHubSpot(FakeApi):
    """CRM v3 objects, search, archived listing and owners, in memory."""

    def __init__(self, token: str = "pat-na1-good", search_window: int = 10_000) -> None:
        super().__init__(token)
        self.search_window = search_window
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in HUBSPOT_MODIFIED}
        self.owners: list[dict[str, Any]] = []
        self.raw_results: dict[str, dict[str, Any]] = {}  # id -> a malformed result to serve
        self.searches: list[dict[str, Any]] = []  # request bodies, in order
        self.unindexed: set[str] = set()  # ids the search index has not caught up with
        self.after_search: Callable[[int], None] | None = None  # called with the count

    def put(self, object_type: str, ident: str, modified: datetime, **props: Any) -> None:
        """Create or update a record at ``modified``."""
        record = self.objects[object_type].setdefault(
            ident, {"id": ident, "createdAt": iso_ms(modified), "archived": False})
        record["properties"] = {**record.get("properties", {}), **props,
                                "hs_object_id": ident,
                                HUBSPOT_MODIFIED[object_type]: iso_ms(modified)}
        record["updatedAt"] = iso_ms(modified)

    def archive(self, object_type: str, ident: str, when: datetime) -> None:
        record = self.objects[object_type][ident]
        record.update(archived=True, archivedAt=iso_ms(when))

    def _error(self, status: int, message: str, category: str) -> Response:
        return status, {}, {"status": "error", "message": message,
                            "correlationId": "0f6a8d2e-fake", "category": category}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              raw: bytes) -> Response:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Authentication credentials not found. This API supports "
                               "OAuth 2.0 authentication.", "INVALID_AUTHENTICATION")
        if method == "GET" and path == "/crm/v3/owners":
            return self._page(self.owners, query)
        match = re.fullmatch(r"/crm/v3/objects/(\w+)(/search)?", path)
        if not match or match.group(1) not in self.objects:
            return self._error(404, f"Unable to route {method} {path}", "OBJECT_NOT_FOUND")
        object_type = match.group(1)
        if method == "GET" and not match.group(2):
            archived = query.get("archived") == "true"
            rows = [self._public(r, ["hs_object_id"]) for r in self.objects[object_type].values()
                    if r["archived"] == archived]
            return self._page(rows, query)
        if method == "POST" and match.group(2):
            body = json.loads(raw)
            self.searches.append(body)
            answer = self._search(object_type, body)
            if self.after_search is not None:
                self.after_search(len(self.searches))
            return answer
        return self._error(405, "method not allowed", "VALIDATION_ERROR")

    @staticmethod
    def _public(record: dict[str, Any], properties: list[str]) -> dict[str, Any]:
        out = {k: v for k, v in record.items() if k != "properties"}
        out["properties"] = {k: v for k, v in record["properties"].items() if k in properties}
        return out

    def _page(self, rows: list[dict[str, Any]], query: dict[str, str]) -> Response:
        limit, after = int(query.get("limit", 10)), int(query.get("after", 0))
        body: dict[str, Any] = {"results": rows[after:after + limit]}
        if after + limit < len(rows):
            body["paging"] = {"next": {"after": str(after + limit),
                                       "link": f"{self.base_url}/?after={after + limit}"}}
        return 200, {}, body

    def _search(self, object_type: str, body: dict[str, Any]) -> Response:
        limit, after = int(body.get("limit", 10)), int(body.get("after") or 0)
        if after + limit > self.search_window:
            return self._error(400, f"Cannot page beyond {self.search_window} results "
                               "(after + limit).", "VALIDATION_ERROR")
        rows = [r for r in self.objects[object_type].values()
                if not r["archived"] and r["id"] not in self.unindexed]
        for group in body.get("filterGroups") or []:
            for flt in group["filters"]:
                prop, op = flt["propertyName"], flt["operator"]
                if op == "GTE":
                    rows = [r for r in rows if parse_time(r["properties"][prop])
                            >= parse_time(flt["value"])]
                elif op == "IN":
                    rows = [r for r in rows if r["properties"].get(prop) in flt["values"]]
                else:
                    return self._error(400, f"unsupported operator {op}", "VALIDATION_ERROR")
        for sort in body.get("sorts") or []:
            rows.sort(key=lambda r: parse_time(r["properties"][sort["propertyName"]]),
                      reverse=sort.get("direction") == "DESCENDING")
        page = [self.raw_results.get(r["id"]) or self._public(r, body.get("properties") or [])
                for r in rows[after:after + limit]]
        out: dict[str, Any] = {"total": len(rows), "results": page}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return 200, {}, out


# --- Salesforce ------------------------------------------------------------------------------

_SOQL = re.compile(r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?"
                   r"(?: ORDER BY (?P<order>.+))?$")


class FakeSalesforce(FakeApi):
    """SOQL query/queryAll over in-memory sObjects, server-side pages of ``page_size``."""

    version = "v61.0"

    def __init__(self, token: str = "00Dfake!good", page_size: int = 3,
                 client: tuple[str, str] = ("3MVG9-client", "client-secret")) -> None:
        super().__init__(token)
        self.page_size = page_size
        self.client = client
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self.issued = 0
        self.uncommitted: set[str] = set()  # ids of a transaction not committed yet

    def put(self, sobject: str, ident: str, modstamp: datetime, **fields: Any) -> None:
        row = self.records.setdefault(sobject, {}).setdefault(ident, {"Id": ident,
                                                                       "IsDeleted": False})
        stamp = modstamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        row.update(fields, SystemModstamp=stamp, LastModifiedDate=stamp)

    def delete(self, sobject: str, ident: str, when: datetime) -> None:
        self.put(sobject, ident, when, IsDeleted=True)

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              raw: bytes) -> Response:
        if method == "POST" and path == "/services/oauth2/token":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            if (form.get("grant_type") != "client_credentials"
                    or (form.get("client_id"), form.get("client_secret")) != self.client):
                return 400, {}, {"error": "invalid_client",
                                 "error_description": "invalid client credentials"}
            self.issued += 1
            self.token = f"00Dfake!issued{self.issued}"
            return 200, {}, {"access_token": self.token, "instance_url": self.base_url,
                             "token_type": "Bearer", "issued_at": "1795650000000"}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, [{"message": "Session expired or invalid",
                              "errorCode": "INVALID_SESSION_ID"}]
        prefix = f"/services/data/{self.version}"
        if path == f"{prefix}/limits":
            return 200, {}, {"DailyApiRequests": {"Max": 15000, "Remaining": 14990}}
        if path in (f"{prefix}/query", f"{prefix}/queryAll"):
            try:
                rows = self._run(query.get("q", ""), deleted=path.endswith("queryAll"))
            except ValueError as exc:
                return 400, {}, [{"message": str(exc), "errorCode": "MALFORMED_QUERY"}]
            locator = f"01gFAKE{len(self.cursors)}"
            self.cursors[locator] = rows
            return self._page(locator, 0)
        match = re.fullmatch(rf"{prefix}/query/(\w+)-(\d+)", path)
        if match and match.group(1) in self.cursors:
            return self._page(match.group(1), int(match.group(2)))
        return 404, {}, [{"message": "The requested resource does not exist",
                          "errorCode": "NOT_FOUND"}]

    def _page(self, locator: str, offset: int) -> Response:
        rows = self.cursors[locator]
        end = offset + self.page_size
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows),
                                "records": rows[offset:end]}
        if end < len(rows):
            body["nextRecordsUrl"] = f"/services/data/{self.version}/query/{locator}-{end}"
        return 200, {}, body

    def _run(self, soql: str, *, deleted: bool) -> list[dict[str, Any]]:
        match = _SOQL.match(soql.strip())
        if not match:
            raise ValueError(f"unexpected token in query: {soql[:60]}")
        sobject = match.group("object")
        fields = [f.strip() for f in match.group("fields").split(",")]
        rows = [r for r in self.records.get(sobject, {}).values()
                if (deleted or not r["IsDeleted"]) and r["Id"] not in self.uncommitted]
        for clause in (match.group("where") or "").split(" AND ") if match.group("where") else []:
            rows = [r for r in rows if self._where(clause.strip(), r)]
        if match.group("order"):
            rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        return [self._shape(sobject, r, fields) for r in rows]

    @staticmethod
    def _where(clause: str, row: dict[str, Any]) -> bool:
        if m := re.fullmatch(r"SystemModstamp >= (\S+)", clause):
            return parse_time(row["SystemModstamp"]) >= parse_time(m.group(1))
        if clause == "IsDeleted = true":
            return bool(row["IsDeleted"])
        if m := re.fullmatch(r"Id IN \((.+)\)", clause):
            return row["Id"] in {i.strip().strip("'") for i in m.group(1).split(",")}
        raise ValueError(f"unsupported clause {clause}")

    def _shape(self, sobject: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        url = f"/services/data/{self.version}/sobjects/{sobject}/{row['Id']}"
        out: dict[str, Any] = {"attributes": {"type": sobject, "url": url}}
        for name in fields:
            head, _, rest = name.partition(".")
            if rest:  # a relationship field such as UserRole.Name
                related = row.get(head)
                out[head] = None if related is None else {
                    "attributes": {"type": head}, rest: related.get(rest)}
            else:
                out[name] = row.get(name)
        return out


def request_paths(api: FakeApi) -> Iterator[str]:
    yield from (path for _, path in api.requests)
