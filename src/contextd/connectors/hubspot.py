"""``hubspot``: CRM v3 companies, contacts, deals and notes through a private-app token.

Incremental through the search API: ``<modified> GTE since``, sorted ascending; each
page restarts the search from the newest modification time seen (the watermark
de-duplicates the boundary), so the 10,000-result search window is never reached and a
record modified mid-pull cannot shift another out of sight; ``after`` pages only through
records sharing one timestamp. Archived records
(``GET /crm/v3/objects/{type}?archived=true``) become tombstones. ACL =
``user:<owner email>`` + ``group:<team>`` (the record's ``hubspot_team_id``, else the
owner's primary team), from ``/crm/v3/owners``. A record that cannot be mapped is a
failure and its id is re-fetched on every pull until it maps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from bs4 import BeautifulSoup
from pydantic import Field, SecretStr, field_validator

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
from contextd.core.errors import SourceError
from contextd.core.types import Batch, RecordFailure, SourceRecord, Tombstone, iso

ObjectType = Literal["companies", "contacts", "deals", "notes"]
ALL_TYPES: tuple[ObjectType, ...] = ("companies", "contacts", "deals", "notes")
SEARCH_WINDOW = 10_000


@dataclass(frozen=True)
class ObjectSpec:
    """How one HubSpot object type is read and rendered."""

    singular: str
    modified: str  # the property the search filters and sorts on
    labels: Mapping[str, str]  # rendered properties, in order


SPECS: dict[str, ObjectSpec] = {
    "companies": ObjectSpec("company", "hs_lastmodifieddate", {
        "name": "Company", "domain": "Domain", "industry": "Industry",
        "lifecyclestage": "Lifecycle stage", "city": "City", "country": "Country",
        "numberofemployees": "Employees", "description": "Description"}),
    # Contacts keep their modification time in ``lastmodifieddate``.
    "contacts": ObjectSpec("contact", "lastmodifieddate", {
        "firstname": "First name", "lastname": "Last name", "email": "Email",
        "jobtitle": "Job title", "company": "Company", "phone": "Phone",
        "lifecyclestage": "Lifecycle stage"}),
    "deals": ObjectSpec("deal", "hs_lastmodifieddate", {
        "dealname": "Deal", "amount": "Amount", "dealstage": "Stage", "pipeline": "Pipeline",
        "closedate": "Close date", "description": "Description"}),
    "notes": ObjectSpec("note", "hs_lastmodifieddate", {"hs_timestamp": "Noted at"}),
}
_ALWAYS = ("hubspot_owner_id", "hubspot_team_id", "associatedcompanyid", "hs_note_body")


class HubSpotConfig(SaasConfig):
    # The stored token is only ever sent to this host: changing it needs the token again.
    endpoint_fields: ClassVar[tuple[str, ...]] = ("base_url",)

    access_token: SecretStr = Field(min_length=1, description="A private-app access token.")
    base_url: str = Field(default="https://api.hubapi.com", pattern=URL_PATTERN,
                          description="The API root (a test double's address in tests).")
    object_types: list[ObjectType] = Field(default_factory=lambda: list(ALL_TYPES),
                                           min_length=1,
        description="Which objects to read: companies, contacts, deals, notes.")
    extra_properties: dict[ObjectType, list[str]] = Field(default_factory=dict,
        description="More properties to read per object type.")
    page_size: int = Field(default=100, ge=1, le=200,
        description="Objects per API page.")

    _token = field_validator("access_token")(header_safe)
    _url = field_validator("base_url")(http_url)


@dataclass(frozen=True)
class Owner:
    address: str  # email, else the owner id
    team: str | None  # primary team name


def _ms(value: datetime) -> str:
    return str(int(value.timestamp() * 1000))


class HubSpotConnector:
    """HubSpot CRM companies, contacts, deals and notes through its REST API."""

    kind: ClassVar[str] = "hubspot"
    Config: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    search_window: int = SEARCH_WINDOW  # results one search can page through

    def __init__(self, name: str, config: HubSpotConfig, *,
                 outbound: OutboundPolicy | None = None) -> None:
        self.name = name
        self.config = config
        self.http = HttpSource(
            source=name, base_url=config.base_url.rstrip("/"), policy=config.retry,
            headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}",
                     "Accept": "application/json"}, outbound=outbound)

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("base_url", "url", self.config.base_url)]

    def check(self) -> None:
        """One cheap authenticated call: a bad token is a SourceAuthError here."""
        self.http.request_json("GET", "/crm/v3/owners", params={"limit": 1})

    # --- reading -------------------------------------------------------------------------

    def _owners(self) -> tuple[dict[str, Owner], dict[str, str]]:
        """Owner id -> Owner, and team id -> team name, from every page of owners."""
        owners: dict[str, Owner] = {}
        teams: dict[str, str] = {}
        for row in self._paged("/crm/v3/owners", {"limit": 100}):
            own_teams = [t for t in row.get("teams") or [] if isinstance(t, dict)]
            for team in own_teams:
                teams[str(team.get("id"))] = str(team.get("name") or team.get("id"))
            primary = next((t for t in own_teams if t.get("primary")), None) or (
                own_teams[0] if own_teams else None)
            owners[str(row.get("id"))] = Owner(
                str(row.get("email") or row.get("id")).lower(),
                str(primary.get("name") or primary.get("id")) if primary else None)
        return owners, teams

    def _paged(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every result of a GET list endpoint, following ``paging.next.after``."""
        after: str | None = None
        while True:
            page = self.http.request_json("GET", path, params={
                **params, **({"after": after} if after else {})})
            yield from (r for r in page.get("results") or [] if isinstance(r, dict))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def _properties(self, object_type: str) -> list[str]:
        spec = SPECS[object_type]
        extra = {str(k): v for k, v in self.config.extra_properties.items()}.get(object_type, [])
        return list(dict.fromkeys([*spec.labels, spec.modified, *_ALWAYS, *extra]))

    def _search(self, object_type: str, filters: list[dict[str, Any]],
                after: str | None) -> dict[str, Any]:
        spec = SPECS[object_type]
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": spec.modified, "direction": "ASCENDING"}],
            "properties": self._properties(object_type), "limit": self.config.page_size}
        if after:
            body["after"] = after
        page: dict[str, Any] = self.http.request_json(
            "POST", f"/crm/v3/objects/{object_type}/search", json=body)
        return page

    # --- mapping -------------------------------------------------------------------------

    def to_record(self, object_type: str, row: Mapping[str, Any], owners: Mapping[str, Owner],
                  teams: Mapping[str, str]) -> SourceRecord:
        """Map one search result; ValueError (a failure value) when it cannot be trusted."""
        spec = SPECS[object_type]
        ident = str(row.get("id") or "").strip()
        if not ident:
            raise ValueError("result has no id")
        props = row.get("properties")
        if not isinstance(props, dict):
            raise ValueError("result has no properties object")
        modified = to_utc(props.get(spec.modified) or row.get("updatedAt"))
        owner = owners.get(str(props.get("hubspot_owner_id") or ""))
        team_id = str(props.get("hubspot_team_id") or "")
        team = teams.get(team_id, team_id) if team_id else (owner.team if owner else None)
        acl = owner_acl(owner.address if owner else None, team, self.config.default_acl)
        key = f"{spec.singular}:{ident}"
        title, text = self._render(object_type, props)
        company = str(props.get("associatedcompanyid") or "").strip()
        return SourceRecord(
            source=self.name, source_id=key, kind="crm", title=title,
            text=f"{text} Owner: {owner.address if owner else 'none'}"
                 f" ({team or 'no'} team).",
            updated_at=modified, updated_at_source="crm_updated_at", acl=acl,
            uri=f"{self.config.base_url.rstrip('/')}/crm/v3/objects/{object_type}/{ident}",
            author=owner.address if owner else "", entity_key=key,
            entities=(f"company:{company}",) if company else (),
            fields={k: v for k, v in props.items() if v not in (None, "")})

    @staticmethod
    def _render(object_type: str, props: Mapping[str, Any]) -> tuple[str, str]:
        details = describe(props, SPECS[object_type].labels)
        if object_type == "companies":
            return f"Company: {props.get('name') or props.get('domain')}", details
        if object_type == "contacts":
            name = " ".join(str(props.get(k) or "") for k in ("firstname", "lastname")).strip()
            return f"Contact: {name or props.get('email')}", details
        if object_type == "deals":
            return f"Deal: {props.get('dealname')}", details
        body = BeautifulSoup(str(props.get("hs_note_body") or ""), "html.parser").get_text(
            "\n", strip=True)
        if not body:
            raise ValueError("note has no body")
        return f"Note: {body.splitlines()[0][:80]}", f"{body}\n\n{details}"

    # --- the protocol --------------------------------------------------------------------

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Per type: re-fetch failed ids, then the search since the watermark, then archives.

        Cursor: ``{type: {"modified": watermark, "archived": watermark, "retry": [ids]}}``,
        checkpointed after every page.
        """
        state: dict[str, Any] = {k: dict(v) for k, v in dict(cursor or {}).items()}
        settled = settled_before(self.config)
        owners, teams = self._owners()
        for object_type in self.config.object_types:
            current = state.setdefault(object_type, {})
            mark = Watermark.load(current.get("modified"))
            retry: set[str] = set(current.get("retry") or [])

            def checkpoint(t: dict[str, Any] = current, m: Watermark = mark,
                           r: set[str] = retry) -> dict[str, Any]:
                t.update(modified=m.dump(settled), retry=sorted(r))
                return {k: dict(v) for k, v in state.items()}

            if retry:
                wanted = sorted(retry)
                retry.clear()  # ids no longer found were archived: nothing left to retry
                for records, failures in self._by_ids(object_type, wanted, owners, teams,
                                                      retry):
                    yield Batch(records=records, failures=failures, cursor=checkpoint())
            yield from self._pull_modified(object_type, mark, retry, owners, teams, checkpoint)
            archived = Watermark.load(current.get("archived"))
            tombstones = self._archived(object_type, archived)
            current["archived"] = archived.dump()
            yield Batch(tombstones=tombstones, cursor=checkpoint())

    def _by_ids(self, object_type: str, ids: list[str], owners: Mapping[str, Owner],
                teams: Mapping[str, str], retry: set[str]
                ) -> Iterator[tuple[list[SourceRecord], list[RecordFailure]]]:
        """Records and failures of these ids (archived ones are simply not returned)."""
        for part in chunked(ids, self.config.page_size):
            page = self._search(object_type, [{"propertyName": "hs_object_id",
                                               "operator": "IN", "values": part}], None)
            yield self._map_page(object_type, page, owners, teams, None, retry)

    def fetch(self, source_ids: list[str]) -> Batch:
        """Re-read quarantined records by id; ids the search no longer finds are tombstones."""
        owners, teams = self._owners()
        by_type = {SPECS[t].singular: t for t in self.config.object_types}
        wanted: dict[str, list[str]] = {}
        requested: list[str] = []
        for source_id in source_ids:
            singular, _, ident = source_id.partition(":")
            if singular in by_type and ident.isdigit():
                wanted.setdefault(by_type[singular], []).append(ident)
                requested.append(source_id)
        return refetched(self.name, requested, (
            page for object_type, ids in wanted.items()
            for page in self._by_ids(object_type, ids, owners, teams, set())))

    def close(self) -> None:
        self.http.close()

    def _pull_modified(self, object_type: str, mark: Watermark, retry: set[str],
                       owners: Mapping[str, Owner], teams: Mapping[str, str],
                       checkpoint: Callable[[], dict[str, Any]]) -> Iterator[Batch]:
        """Keyset paging: every page restarts the search from the watermark.

        Offset paging alone skips records when one already read is modified mid-pull
        (the rest shift left); a search from the watermark cannot, and never nears the
        10,000-result window. ``after`` pages only through records that share the
        watermark's exact time.
        """
        spec = SPECS[object_type]
        after: str | None = None
        while True:
            since = mark.since
            filters = ([{"propertyName": spec.modified, "operator": "GTE",
                         "value": _ms(since)}] if since else [])
            page = self._search(object_type, filters, after)
            records, failures = self._map_page(object_type, page, owners, teams, mark, retry)
            yield Batch(records=records, failures=failures, cursor=checkpoint())
            next_after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not next_after:
                return
            if mark.since != since:
                after = None  # restart from the newer watermark
                continue
            if int(next_after) + self.config.page_size > self.search_window:
                raise SourceError(f"{self.name}: over {self.search_window} {object_type} "
                                  f"share the modification time {iso(since) if since else ''}"
                                  "; the search API cannot page past them")
            after = next_after

    def _map_page(self, object_type: str, page: Mapping[str, Any],
                  owners: Mapping[str, Owner], teams: Mapping[str, str],
                  mark: Watermark | None, retry: set[str]
                  ) -> tuple[list[SourceRecord], list[RecordFailure]]:
        """Records and failures of one search page; the watermark moves past both."""
        spec = SPECS[object_type]
        records: list[SourceRecord] = []
        failures: list[RecordFailure] = []
        for number, row in enumerate(page.get("results") or []):
            row = row if isinstance(row, dict) else {"_invalid": row}
            ident = str(row.get("id") or "").strip()
            key = f"{spec.singular}:{ident}" if ident else f"{spec.singular}:#{number}"
            props = row.get("properties")
            props = props if isinstance(props, dict) else {}
            try:
                modified = to_utc(props.get(spec.modified) or row.get("updatedAt"))
            except ValueError:
                modified = None
            if mark is not None and modified is not None and ident:
                if mark.seen(ident, modified):
                    continue
                mark.advance(ident, modified)
            try:
                records.append(self.to_record(object_type, row, owners, teams))
            except Exception as exc:  # a malformed record is a failure value
                failures.append(RecordFailure(self.name, key, error_text(exc),
                                              json.dumps(row, default=str)[:2000]))
                if ident:
                    retry.add(ident)
        return records, failures

    def _archived(self, object_type: str, mark: Watermark) -> list[Tombstone]:
        """Tombstones for records archived since the mark (the list is not sorted)."""
        singular = SPECS[object_type].singular
        found: list[tuple[str, datetime]] = []
        for row in self._paged(f"/crm/v3/objects/{object_type}",
                               {"archived": "true", "limit": 100,
                                "properties": "hs_object_id"}):
            ident = str(row.get("id") or "").strip()
            try:
                when = to_utc(row.get("archivedAt") or row.get("updatedAt"))
            except ValueError:
                continue
            if ident and not mark.seen(ident, when):
                found.append((ident, when))
        for ident, when in sorted(found, key=lambda item: item[1]):
            mark.advance(ident, when)
        return [Tombstone(self.name, f"{singular}:{i}") for i, _ in found]

    def list_ids(self) -> set[str]:
        """Ids of every live (not archived) record of the configured types."""
        ids: set[str] = set()
        for object_type in self.config.object_types:
            singular = SPECS[object_type].singular
            ids.update(f"{singular}:{row['id']}" for row in self._paged(
                f"/crm/v3/objects/{object_type}",
                {"limit": 100, "archived": "false", "properties": "hs_object_id"})
                if row.get("id"))
        return ids
