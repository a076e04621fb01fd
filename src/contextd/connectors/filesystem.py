"""``filesystem``: markdown, text, HTML, PDF and DOCX files under a directory.

ACL per file: front matter ``acl`` if present, else the first ``acl`` rule whose glob
matches the path relative to ``path``, else ``default_acl``. Nothing is public unless a
rule or ``default_acl`` says ``public``: a config with neither rules nor ``default_acl``
is refused, and a file no rule covers (without ``default_acl``) is a failure, not public.
Globs (``include`` and ACL rules) use :func:`fnmatch.fnmatchcase` on the POSIX relative
path, so ``*`` also crosses ``/`` (``finance/*`` and ``finance/**`` both cover the whole
subtree), and a leading ``**/`` also matches at the top level (``**/*.md`` matches
``README.md``). Files and folders whose name starts with a dot are skipped.

``updated_at`` comes from the file's own content clock, which a copy or a ``git clone``
keeps: front matter ``updated_at`` (markdown, text), the PDF's ``ModDate``/``CreationDate``,
the DOCX core properties ``modified``/``created``, an HTML ``<meta>`` date
(``updated_at``, ``last-modified``, ``article:modified_time``, ``dcterms.modified``,
``date``); the file's mtime only when the file has none. ``updated_at_source`` says which.
Front matter ``entity`` ties dated versions of one document together in ``entity_key``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import frontmatter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contextd.connectors.base import ConnectorConfig, chunked, error_text, file_state, to_utc
from contextd.core.errors import ConfigError, SourceError
from contextd.core.types import (
    Batch,
    RecordFailure,
    SourceRecord,
    Tombstone,
    is_valid_principal,
)

DEFAULT_INCLUDE = ["**/*.md", "**/*.markdown", "**/*.txt", "**/*.html", "**/*.htm",
                   "**/*.pdf", "**/*.docx"]
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def valid_principals(value: Sequence[str]) -> list[str]:
    """The principals, or ValueError naming the bad ones (pydantic turns it into a field error)."""
    bad = [p for p in value if not isinstance(p, str) or not is_valid_principal(p)]
    if bad:
        raise ValueError(f"invalid principals {bad}: use public, user:<id> or group:<id>")
    return list(value)


class AclRule(BaseModel):
    """One ACL rule: files matching ``glob`` get ``principals``."""

    model_config = ConfigDict(extra="forbid")

    glob: str = Field(min_length=1,
        description="Files this rule covers, relative to path (``finance/**``); the first "
                    "matching rule wins.")
    principals: list[str] = Field(min_length=1,
        description="Who may read those files: ``public``, ``user:<id>`` or ``group:<id>``.")

    @field_validator("principals")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return valid_principals(value)


class FilesystemConfig(ConnectorConfig):
    path: str = Field(min_length=1,
        description="The directory to read (under filesystem_allowed_roots).")
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE), min_length=1,
        description="Globs of the files to read; others are skipped.")
    acl: list[AclRule] = Field(default_factory=list,
        description="Rules giving files principals by glob, tried in order.")
    # After ``acl``, so its validator sees the rules and names this field on error.
    default_acl: list[str] | None = Field(default=None, min_length=1, validate_default=True,
        description="Principals of files no rule matches. Give acl rules or this: files are "
                    "never public by default.")

    @field_validator("default_acl")
    @classmethod
    def _valid(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            if not info.data.get("acl"):
                raise ValueError("give acl rules or default_acl (use [\"public\"] to share "
                                 "with everyone): files are never public by default")
            return None
        return valid_principals(value)


def matches(relpath: str, pattern: str) -> bool:
    """fnmatch on the POSIX relative path; ``**/x`` also matches ``x`` at the top."""
    if fnmatch.fnmatchcase(relpath, pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(relpath, pattern[3:])


def rule_acl(relpath: str, rules: Sequence[AclRule], default: Sequence[str] | None
             ) -> list[str]:
    """Principals of the first rule whose glob matches, else the default (else none)."""
    for rule in rules:
        if matches(relpath, rule.glob):
            return list(rule.principals)
    return list(default or [])


@dataclass(frozen=True)
class Extracted:
    """What a file says about itself: its text, front matter and a title from the content."""

    text: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""
    updated_at: datetime | None = None  # the content clock of PDF, DOCX and HTML files
    clock: str = ""


_HTML_DATE_META = ("updated_at", "last-modified", "article:modified_time", "dcterms.modified",
                   "og:updated_time", "date", "dc.date", "article:published_time")


def _pdf_date(value: object) -> datetime | None:
    """A PDF date string (``D:20260915120000+02'00'``) as UTC, None if unreadable."""
    raw = str(value or "").strip()
    if raw.startswith("D:"):
        raw = raw[2:]
    digits = raw[:14]
    if len(digits) < 8 or not digits.isdigit():
        return None
    stamp = datetime.strptime(digits.ljust(14, "0"), "%Y%m%d%H%M%S")
    zone = raw[14:].replace("'", "")
    if zone[:1] in "+-" and len(zone) >= 5 and zone[1:5].isdigit():
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return (stamp - sign * offset).replace(tzinfo=UTC)
    return stamp.replace(tzinfo=UTC)


def _html_date(soup: Any) -> datetime | None:
    found: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = str(tag.get("name") or tag.get("property") or tag.get("http-equiv") or "").lower()
        if key in _HTML_DATE_META and tag.get("content"):
            found.setdefault(key, str(tag["content"]))
    for key in _HTML_DATE_META:
        if key in found:
            try:
                return to_utc(found[key])
            except ValueError:
                continue
    return None


def extract(path: Path) -> Extracted:
    """Read and parse one file by its suffix; any exception means the file is unusable."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown", ".txt"):
        post = frontmatter.loads(path.read_text(encoding="utf-8"))
        heading = _HEADING.search(post.content) if suffix != ".txt" else None
        return Extracted(post.content, dict(post.metadata), heading.group(1) if heading else "")
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "html.parser")
        title = soup.title.get_text(strip=True) if soup.title else ""
        stamp = _html_date(soup)
        for tag in soup(["script", "style"]):
            tag.decompose()
        return Extracted((soup.body or soup).get_text("\n", strip=True), {}, title, stamp,
                         "html_meta" if stamp else "")
    if suffix == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        pages = "\n\n".join(page.extract_text() or "" for page in reader.pages)
        if not pages.strip():
            raise ValueError("no extractable text in the PDF (scanned or empty?)")
        info: Any = reader.metadata or {}
        title = reader.metadata.title if reader.metadata and reader.metadata.title else ""
        stamp = _pdf_date(info.get("/ModDate")) or _pdf_date(info.get("/CreationDate"))
        return Extracted(pages, {}, str(title), stamp, "pdf_metadata" if stamp else "")
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        text = "\n".join(p.text for p in document.paragraphs)
        core = document.core_properties
        when = core.modified or core.created
        stamp = to_utc(when) if when else None
        return Extracted(text, {}, core.title or "", stamp, "docx_core" if stamp else "")
    raise ValueError(f"unsupported file type {suffix!r}")


def to_record(source: str, relpath: str, uri: str, content: Extracted, mtime: datetime,
              acl: Sequence[str]) -> SourceRecord:
    """Map an extracted file to a record; ValueError if its front matter is unusable.

    ``acl`` is what the glob rules give; front matter ``acl`` overrides it.
    """
    meta = content.meta
    if "acl" in meta:
        given = meta["acl"]
        if not isinstance(given, list) or not given:
            raise ValueError("front matter acl must be a non-empty list of principals")
        acl = valid_principals([str(p) for p in given])
    if not acl:
        raise ValueError("no acl rule matches this file, it has no front matter acl, and "
                         "the connector has no default_acl: refusing to guess its ACL")
    if meta.get("updated_at"):
        updated_at, clock = to_utc(meta["updated_at"]), "front_matter"
    elif content.updated_at is not None:
        updated_at, clock = content.updated_at, content.clock
    else:
        updated_at, clock = mtime, "mtime"
    return SourceRecord(
        source=source, source_id=relpath, kind="document",
        title=str(meta.get("title") or content.title or Path(relpath).stem),
        text=content.text, updated_at=updated_at, acl=tuple(acl), uri=uri,
        author=str(meta.get("author") or ""),
        entity_key=str(meta.get("entity") or f"file:{relpath}"),
        fields={k: str(v) for k, v in meta.items() if k != "acl"},
        updated_at_source=clock,
    )


class FilesystemConnector:
    """Documents from a directory tree, re-read only when their mtime or size changes.

    Cursor: ``{"config": <hash of globs and ACL rules>, "files": {relpath: [mtime_ns,
    size]}}``. A file that fails to parse is left out of ``files`` (or keeps its old
    state), so it is retried on the next pull; a changed ``config`` hash re-reads every
    file, because ACLs may have changed while the files did not.
    """

    kind: ClassVar[str] = "filesystem"
    Config: ClassVar[type[ConnectorConfig]] = FilesystemConfig

    def __init__(self, name: str, config: FilesystemConfig) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path).expanduser()
        rules = config.model_dump(exclude={"path", "batch_size"})
        self._fingerprint = hashlib.sha256(
            json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]

    def targets(self) -> list[tuple[str, str, Any]]:
        return [("path", "path", self.config.path)]

    def check_local(self) -> None:
        """The path is a readable directory (checked on create, before anything is saved)."""
        self.check()
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ConfigError(f"path {str(self.root)!r} is not readable",
                              details=[{"field": "config.path", "message": "not readable"}])

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"path {str(self.root)!r} does not exist or is not a directory",
                              details=[{"field": "config.path", "message": "not a directory"}])
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError(f"path {str(self.root)!r} is not readable")

    def _files(self) -> dict[str, Path]:
        self.check()
        found = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
                continue
            if any(matches(rel, g) for g in self.config.include):
                found[rel] = path
        return found

    def list_ids(self) -> set[str]:
        return set(self._files())

    def read(self, relpath: str, path: Path) -> SourceRecord:
        """Extract one file and map it (the I/O half, then the pure half)."""
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        acl = rule_acl(relpath, self.config.acl, self.config.default_acl)
        return to_record(self.name, relpath, path.resolve().as_uri(), extract(path), mtime, acl)

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        files = self._files()
        previous: dict[str, Any] = dict((cursor or {}).get("files") or {})
        if (cursor or {}).get("config") != self._fingerprint:
            previous = {}  # rules changed: re-read all (the ingestor skips unchanged text)
        state = {rel: st for rel, st in previous.items() if rel in files}
        tombstones = [Tombstone(self.name, rel) for rel in sorted(set(previous) - set(files))]
        changed = [rel for rel, path in files.items() if previous.get(rel) != file_state(path)]
        if not changed:
            if tombstones:
                yield Batch(tombstones=tombstones, cursor=self._cursor(state))
            return
        for group in chunked(changed, self.config.batch_size):
            records, failures = [], []
            for rel in group:
                try:
                    before = file_state(files[rel])
                    records.append(self.read(rel, files[rel]))
                    state[rel] = before
                except Exception as exc:  # any parse error becomes a failure value
                    failures.append(RecordFailure(self.name, rel, error_text(exc)))
            yield Batch(records=records, tombstones=tombstones, failures=failures,
                        cursor=self._cursor(state))
            tombstones = []

    def _cursor(self, state: Mapping[str, list[int]]) -> dict[str, Any]:
        return {"config": self._fingerprint, "files": dict(state)}
