"""``salesforce``: Account, Contact, Opportunity and Task through the REST API's SOQL query.

Incremental on ``SystemModstamp >= since`` ordered ascending (the watermark drops the
re-read boundary), ``nextRecordsUrl`` paging, and a checkpoint every ``batch_size``
records. Deletions come from ``queryAll`` with ``IsDeleted = true`` since the deletion
watermark (the recycle bin keeps them for a while; reconciliation through ``list_ids``
catches the rest). ACL = ``user:<owner username>`` (the owner id when the owner is not a
user, e.g. a queue) + ``group:<owner's role>``. Auth is an OAuth access token, or the
client-credentials flow against the instance's token endpoint, renewed once on a 401.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from contextd.connectors.base import ConnectorConfig, chunked, error_text, to_utc
from contextd.connectors.http import HttpSource
from contextd.connectors.limits import OutboundPolicy
from contextd.connectors.saas import (
    URL_PATTERN,
    SaasConfig,
    describe,
    header_safe,
    http_url,
    owner_acl,
    refetched,
    settled_before,
)
from contextd.connectors.watermark import Watermark
from contextd.core.errors import SourceAuthError, SourceError
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone

SObject = Literal["Account", "Contact", "Opportunity", "Task"]
ALL_OBJECTS: tuple[SObject, ...] = ("Account", "Contact", "Opportunity", "Task")
_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_IDS_PER_QUERY = 200  # keeps a SOQL ``Id IN (...)`` well under the URI length limit
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ObjectSpec:
    """Rendered fields (in order) and the field naming the record."""

    name_field: str
    labels: Mapping[str, str]


SPECS: dict[str, ObjectSpec] = {
    "Account": ObjectSpec("Name", {
        "Name": "Account", "Type": "Type", "Industry": "Industry", "Website": "Website",
        "BillingCity": "City", "BillingCountry": "Country", "Description": "Description"}),
    "Contact": ObjectSpec("Name", {
        "Name": "Contact", "Title": "Title", "Email": "Email", "Phone": "Phone",
        "Description": "Description"}),
    "Opportunity": ObjectSpec("Name", {
        "Name": "Opportunity", "StageName": "Stage", "Amount": "Amount",
        "CloseDate": "Close date", "Probability": "Probability (%)",
        "Description": "Description"}),
    "Task": ObjectSpec("Subject", {
        "Subject": "Task", "Status": "Status", "Priority": "Priority",
        "ActivityDate": "Due", "Description": "Description"}),
}
_ALWAYS = ("Id", "OwnerId", "SystemModstamp", "LastModifiedDate")
_RELATED = {"Contact": ("AccountId",), "Opportunity": ("AccountId",),
            "Task": ("AccountId", "WhatId", "WhoId")}


class SalesforceConfig(SaasConfig):
    # Tokens and the client secret go only to this host: changing it needs them again.
    endpoint_fields: ClassVar[tuple[str, ...]] = ("instance_url",)

    instance_url: str = Field(pattern=URL_PATTERN,
        description="Your org's URL, e.g. https://acme.my.salesforce.com.")
    api_version: str = Field(default="v61.0", pattern=r"^v\d+\.\d$",
        description="REST API version.")
    client_id: str | None = Field(None,
        description="Connected app client id (client-credentials flow).")
    client_secret: SecretStr | None = Field(None,
        description="Connected app client secret.")
    # After the client fields, so its validator sees them and names this field on error.
    access_token: SecretStr | None = Field(default=None, validate_default=True,
        description="An access token; or give client_id and client_secret.")
    objects: list[SObject] = Field(default_factory=lambda: list(ALL_OBJECTS), min_length=1,
        description="Which objects to read: Account, Contact, Opportunity, Task.")
    extra_fields: dict[SObject, list[str]] = Field(default_factory=dict,
        description="More fields to read per object.")

    @field_validator("access_token")
    @classmethod
    def _one_auth(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        client_id, secret = info.data.get("client_id"), info.data.get("client_secret")
        client = client_id is not None or secret is not None
        if (value is None) == (not client):
            raise ValueError("set either access_token, or client_id and client_secret "
                             "(client-credentials flow)")
        if client and not (client_id and secret):
            raise ValueError("the client-credentials flow needs both client_id and "
                             "client_secret")
        return value

    _token = field_validator("access_token")(header_safe)
    _url = field_validator("instance_url")(http_url)

    @field_validator("extra_fields")
    @classmethod
    def _field_names(cls, value: dict[SObject, list[str]]) -> dict[SObject, list[str]]:
        bad = [f for fields in value.values() for f in fields if not _FIELD.match(f)]
        if bad:
            raise ValueError(f"invalid field names: {bad}")
        return value


@dataclass(frozen=True)
class Owner:
    username: str
    role: str | None


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal, floored to the second (``>=`` then re-reads, never skips)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SalesforceConnector:
    """Salesforce accounts, contacts, opportunities and tasks through its REST API."""

    kind: ClassVar[str] = "salesforce"
    Config: ClassVar[type[ConnectorConfig]] = SalesforceConfig

    def __init__(self, name: str, config: SalesforceConfig, *,
                 outbound: OutboundPolicy | None = None) -> None:
        self.name = name
        self.config = config
        self.http = HttpSource(source=name, base_url=config.instance_url.rstrip("/"),
                               policy=config.retry, headers={"Accept": "application/json"},
                               outbound=outbound)
        self._token: str | None = (config.access_token.get_secret_value()
                                   if config.access_token else None)
        if self._token:
            self.http.set_header("Authorization", f"Bearer {self._token}")

    # --- auth and requests ---------------------------------------------------------------

    def _authenticate(self) -> None:
        """Client-credentials flow; the token endpoint's 400 means bad credentials."""
        assert self.config.client_id and self.config.client_secret
        try:
            answer = self.http.request_json("POST", "/services/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.get_secret_value()})
        except SourceError as exc:
            if isinstance(exc, SourceAuthError) or "invalid_client" in exc.message \
                    or "invalid_grant" in exc.message:
                raise SourceAuthError(f"client-credentials login rejected (not retried): "
                                      f"{exc.message}") from exc
            raise
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise SourceAuthError(f"{self.name}: the token endpoint returned no access_token")
        self._token = str(token)
        self.http.set_header("Authorization", f"Bearer {self._token}")

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        client_flow = self.config.access_token is None
        if self._token is None:
            self._authenticate()
        try:
            answer = self.http.request_json("GET", path, params=params)
        except SourceAuthError:
            if not client_flow:
                raise
            self._authenticate()  # the session expired: one fresh token, then give up
            answer = self.http.request_json("GET", path, params=params)
        if not isinstance(answer, dict):
            raise SourceError(f"{self.name}: {path} did not answer a JSON object")
        return answer

    def _query(self, soql: str, *, deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Pages of records of a SOQL query, following ``nextRecordsUrl``."""
        endpoint = "queryAll" if deleted else "query"
        page = self._get(f"/services/data/{self.config.api_version}/{endpoint}", {"q": soql})
        while True:
            yield [r for r in page.get("records") or [] if isinstance(r, dict)]
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._get(str(next_url))

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("instance_url", "url", self.config.instance_url)]

    def check(self) -> None:
        """One authenticated call: bad credentials raise SourceAuthError here."""
        self._get(f"/services/data/{self.config.api_version}/limits")

    # --- mapping -------------------------------------------------------------------------

    def _fields(self, sobject: str) -> list[str]:
        extra = {str(k): v for k, v in self.config.extra_fields.items()}.get(sobject, [])
        return list(dict.fromkeys([*_ALWAYS, *SPECS[sobject].labels,
                                   *_RELATED.get(sobject, ()), *extra]))

    def _owners(self) -> dict[str, Owner]:
        owners: dict[str, Owner] = {}
        for page in self._query("SELECT Id, Username, UserRole.Name FROM User"):
            for row in page:
                role = row.get("UserRole") if isinstance(row.get("UserRole"), dict) else None
                owners[str(row.get("Id"))] = Owner(
                    str(row.get("Username") or row.get("Id")).lower(),
                    str(role["Name"]) if role and role.get("Name") else None)
        return owners

    def to_record(self, sobject: str, row: Mapping[str, Any],
                  owners: Mapping[str, Owner]) -> SourceRecord:
        """Map one SOQL record; ValueError (a failure value) when it cannot be trusted."""
        ident = str(row.get("Id") or "").strip()
        if not _ID.match(ident):
            raise ValueError(f"record has no valid Id: {ident!r}")
        spec = SPECS[sobject]
        name = str(row.get(spec.name_field) or "").strip()
        if not name and not str(row.get("Description") or "").strip():
            raise ValueError(f"{sobject} has neither {spec.name_field} nor Description")
        updated = to_utc(row.get("LastModifiedDate") or row.get("SystemModstamp"))
        owner_id = str(row.get("OwnerId") or "").strip()
        owner = owners.get(owner_id)
        user = owner.username if owner else owner_id
        acl = owner_acl(user or None, owner.role if owner else None, self.config.default_acl)
        key = f"{sobject.lower()}:{ident}"
        related = [f"{'account' if column == 'AccountId' else 'sf'}:{row[column]}"
                   for column in _RELATED.get(sobject, ()) if row.get(column)]
        fields = {k: v for k, v in row.items() if k != "attributes" and v not in (None, "")}
        return SourceRecord(
            source=self.name, source_id=key, kind="crm",
            title=f"{sobject}: {name or ident}",
            text=f"{describe(row, spec.labels)} Owner: {user or 'none'}"
                 f" ({owner.role if owner and owner.role else 'no'} role).",
            updated_at=updated, updated_at_source="crm_updated_at", acl=acl,
            uri=f"{self.config.instance_url.rstrip('/')}/{ident}", author=user,
            entity_key=key, entities=tuple(dict.fromkeys(related)), fields=fields)

    # --- the protocol --------------------------------------------------------------------

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Per object: re-query failed ids, the changes since the watermark, then deletions.

        Cursor: ``{object: {"modified": watermark, "deleted": watermark, "retry": [ids]}}``.
        """
        state: dict[str, Any] = {k: dict(v) for k, v in dict(cursor or {}).items()}
        settled = settled_before(self.config)
        owners = self._owners()
        for sobject in self.config.objects:
            current = state.setdefault(sobject, {})
            mark = Watermark.load(current.get("modified"))
            retry: set[str] = {i for i in current.get("retry") or [] if _ID.match(i)}

            def checkpoint(t: dict[str, Any] = current, m: Watermark = mark,
                           r: set[str] = retry) -> dict[str, Any]:
                t.update(modified=m.dump(settled), retry=sorted(r))
                return {k: dict(v) for k, v in state.items()}

            select = f"SELECT {', '.join(self._fields(sobject))} FROM {sobject}"
            if retry:
                wanted = sorted(retry)
                retry.clear()  # ids not found any more were deleted: nothing left to retry
                for records, failures in self._by_ids(sobject, wanted, owners, retry):
                    yield Batch(records=records, failures=failures, cursor=checkpoint())
            where = f" WHERE SystemModstamp >= {soql_datetime(mark.since)}" if mark.since else ""
            for page in self._query(f"{select}{where} ORDER BY SystemModstamp ASC, Id ASC"):
                for part in chunked(page, self.config.batch_size):
                    records, failures = self._map(sobject, part, owners, mark, retry)
                    yield Batch(records=records, failures=failures, cursor=checkpoint())
            deleted = Watermark.load(current.get("deleted"))
            tombstones = self._deleted(sobject, deleted)
            current["deleted"] = deleted.dump()
            yield Batch(tombstones=tombstones, cursor=checkpoint())

    def _by_ids(self, sobject: str, ids: list[str], owners: Mapping[str, Owner],
                retry: set[str]) -> Iterator[tuple[list[SourceRecord], list[RecordFailure]]]:
        """Records and failures of these ids (deleted ones are simply not returned)."""
        select = f"SELECT {', '.join(self._fields(sobject))} FROM {sobject}"
        for part in chunked([i for i in ids if _ID.match(i)], _IDS_PER_QUERY):
            quoted = ", ".join(f"'{i}'" for i in part)
            for page in self._query(f"{select} WHERE Id IN ({quoted})"):
                yield self._map(sobject, page, owners, None, retry)

    def fetch(self, source_ids: list[str]) -> Batch:
        """Re-read quarantined records by id; ids no longer found are tombstones."""
        owners = self._owners()
        by_prefix = {s.lower(): s for s in self.config.objects}
        wanted: dict[str, list[str]] = {}
        requested: list[str] = []
        for source_id in source_ids:
            prefix, _, ident = source_id.partition(":")
            if prefix in by_prefix and _ID.match(ident):
                wanted.setdefault(by_prefix[prefix], []).append(ident)
                requested.append(source_id)
        return refetched(self.name, requested, (
            page for sobject, ids in wanted.items()
            for page in self._by_ids(sobject, ids, owners, set())))

    def close(self) -> None:
        self.http.close()

    def _map(self, sobject: str, rows: list[dict[str, Any]], owners: Mapping[str, Owner],
             mark: Watermark | None, retry: set[str]
             ) -> tuple[list[SourceRecord], list[RecordFailure]]:
        """Records and failures of some rows; the watermark moves past both."""
        records: list[SourceRecord] = []
        failures: list[RecordFailure] = []
        for number, row in enumerate(rows):
            ident = str(row.get("Id") or "").strip()
            valid_id = bool(_ID.match(ident))
            try:
                modified: datetime | None = to_utc(row.get("SystemModstamp"))
            except ValueError:
                modified = None
            if mark is not None and modified is not None and valid_id:
                if mark.seen(ident, modified):
                    continue
                mark.advance(ident, modified)
            try:
                records.append(self.to_record(sobject, row, owners))
            except Exception as exc:  # a malformed record is a failure value
                key = f"{sobject.lower()}:{ident if valid_id else f'#{number}'}"
                failures.append(RecordFailure(self.name, key, error_text(exc),
                                              json.dumps(row, default=str)[:2000]))
                if valid_id:
                    retry.add(ident)
        return records, failures

    def _deleted(self, sobject: str, mark: Watermark) -> list[Tombstone]:
        where = f" AND SystemModstamp >= {soql_datetime(mark.since)}" if mark.since else ""
        tombstones: list[Tombstone] = []
        soql = (f"SELECT Id, SystemModstamp FROM {sobject} WHERE IsDeleted = true{where} "
                "ORDER BY SystemModstamp ASC, Id ASC")
        for page in self._query(soql, deleted=True):
            for row in page:
                ident = str(row.get("Id") or "")
                try:
                    when = to_utc(row.get("SystemModstamp"))
                except ValueError:
                    continue
                if _ID.match(ident) and not mark.seen(ident, when):
                    mark.advance(ident, when)
                    tombstones.append(Tombstone(self.name, f"{sobject.lower()}:{ident}"))
        return tombstones

    def list_ids(self) -> set[str]:
        """Ids of every live record of the configured objects (``query`` skips deleted)."""
        ids: set[str] = set()
        for sobject in self.config.objects:
            for page in self._query(f"SELECT Id FROM {sobject}"):
                ids.update(f"{sobject.lower()}:{r['Id']}" for r in page if r.get("Id"))
        return ids

