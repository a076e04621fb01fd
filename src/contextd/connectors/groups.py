"""The ``groups`` source kind: group memberships from a directory export (CSV or LDIF).

Unlike content connectors it yields no documents: it reads who belongs to which group
and the directory sync (:mod:`contextd.sync.directory`) replaces every membership this
source set before, so a removal at the source is a removal here on the next sync.

CSV: a header with ``group`` and ``member`` columns; a member is ``user:<id>``,
``group:<id>`` (a nested group) or a bare id (a user). LDIF (RFC 2849): entries of
``groupOfNames`` / ``groupOfUniqueNames`` / ``posixGroup``; the group id is its ``cn``,
``member``/``uniqueMember`` DNs whose first attribute is ``cn`` of a group are nested
groups, other DNs are users named by their first attribute's value (``uid=ana,...`` ->
``user:ana``); ``memberUid`` values are users.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from contextd.connectors.base import ConnectorConfig
from contextd.core.errors import ConfigError, InvalidInput

_GROUP_CLASSES = frozenset({"groupofnames", "groupofuniquenames", "posixgroup", "group"})


@dataclass(frozen=True, slots=True, order=True)
class Membership:
    """``member`` (``user:<id>`` or ``group:<id>``) belongs to group ``group``."""

    group: str
    member: str


def _ident(value: str, where: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or ":" in value or any(c.isspace() for c in value):
        raise InvalidInput(f"{where}: invalid id {value!r} (1-200 characters, no ':' or spaces)",
                           details=[{"field": "content", "message": where}])
    return value


def _member(value: str, where: str) -> str:
    prefix, sep, rest = value.strip().partition(":")
    if sep and prefix in ("user", "group"):
        return f"{prefix}:{_ident(rest, where)}"
    return f"user:{_ident(value, where)}"


def parse_csv(text: str) -> list[Membership]:
    """Memberships from ``group,member`` CSV; InvalidInput names the bad line."""
    try:
        return _parse_csv(text)
    except csv.Error as exc:
        raise InvalidInput(f"not valid CSV: {exc}",
                           details=[{"field": "content", "message": str(exc)}]) from None


def _parse_csv(text: str) -> list[Membership]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    if not {"group", "member"} <= fields:
        raise InvalidInput("CSV needs a header with 'group' and 'member' columns",
                           details=[{"field": "content", "message": "missing columns"}])
    found: set[Membership] = set()
    for row in reader:
        norm = {str(k).strip().lower(): (v or "") for k, v in row.items() if k is not None}
        if not any(v.strip() for v in norm.values()):
            continue
        where = f"line {reader.line_num}"
        found.add(Membership(_ident(norm["group"], where), _member(norm["member"], where)))
    return sorted(found)


def _first_rdn(dn: str) -> tuple[str, str]:
    attr, _, rest = dn.partition("=")
    value = rest.split(",", 1)[0]
    return attr.strip().lower(), value.replace("\\", "").strip()


def parse_ldif(data: bytes) -> list[Membership]:
    """Memberships from an LDIF export of group entries; InvalidInput on a broken file."""
    import ldif

    try:
        entries: list[tuple[str, dict[str, Any]]] = list(ldif.LDIFParser(io.BytesIO(data)).parse())
    except Exception as exc:  # the parser raises plain ValueErrors on malformed input
        raise InvalidInput(f"not valid LDIF: {exc}",
                           details=[{"field": "content", "message": str(exc)}]) from None
    groups: dict[str, dict[str, list[str]]] = {}
    for dn, entry in entries:
        attrs = {k.lower(): [str(v) for v in vals] for k, vals in entry.items()}
        classes = {c.lower() for c in attrs.get("objectclass", [])}
        if classes & _GROUP_CLASSES:
            cn = (attrs.get("cn") or [_first_rdn(dn)[1]])[0]
            groups[dn.lower().replace(" ", "")] = {"cn": [cn], **attrs}
    group_dns = {dn: attrs["cn"][0] for dn, attrs in groups.items()}
    found: set[Membership] = set()
    for attrs in groups.values():
        group = _ident(attrs["cn"][0], "group cn")
        for dn in attrs.get("member", []) + attrs.get("uniquemember", []):
            key = dn.lower().replace(" ", "")
            if key in group_dns:
                found.add(Membership(group, f"group:{_ident(group_dns[key], dn)}"))
            else:
                found.add(Membership(group, f"user:{_ident(_first_rdn(dn)[1], dn)}"))
        for uid in attrs.get("memberuid", []):
            found.add(Membership(group, f"user:{_ident(uid, 'memberUid')}"))
    return sorted(found)


def parse_memberships(fmt: str, content: bytes) -> list[Membership]:
    """Dispatch on ``fmt`` (``csv`` or ``ldif``)."""
    if fmt == "csv":
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("CSV must be UTF-8", details=[{"field": "content"}]) from None
        return parse_csv(text)
    if fmt == "ldif":
        return parse_ldif(content)
    raise InvalidInput(f"unknown format {fmt!r}; use csv or ldif", details=[{"field": "format"}])


class GroupsConfig(ConnectorConfig):
    path: Path = Field(description="A CSV or LDIF export of group memberships.")
    format: Literal["csv", "ldif"] | None = Field(
        None, description="Defaults to the file's suffix (.csv or .ldif).")


class GroupsConnector:
    """Reads a membership export from a file; the directory sync applies it."""

    kind: ClassVar[str] = "groups"
    Config: ClassVar[type[ConnectorConfig]] = GroupsConfig

    def __init__(self, name: str, config: GroupsConfig) -> None:
        self.name = name
        self.config = config

    @property
    def format(self) -> str:
        if self.config.format:
            return self.config.format
        suffix = self.config.path.suffix.lower().lstrip(".")
        if suffix not in ("csv", "ldif"):
            raise ConfigError("cannot tell the format from the file name; set config.format",
                              details=[{"field": "config.format", "message": "required"}])
        return suffix

    def check(self) -> None:
        if not self.config.path.is_file():
            raise ConfigError(f"{self.config.path} is not a readable file",
                              details=[{"field": "config.path", "message": "not a file"}])
        _ = self.format

    def memberships(self) -> list[Membership]:
        """Every membership the export holds now."""
        self.check()
        return parse_memberships(self.format, self.config.path.read_bytes())
