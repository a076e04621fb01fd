"""``filesystem``: markdown, text, HTML, PDF and DOCX files under a directory.

ACL per file: front matter ``acl`` if present, else the first ``acl`` rule whose glob
matches the path relative to ``path``, else ``default_acl``. Globs use ``fnmatch``
semantics on POSIX relative paths (``*`` also crosses ``/``), and a leading ``**/`` also
matches files at the top level. ``updated_at`` is front matter ``updated_at`` when present,
else the file's mtime; ``entity`` in front matter ties dated versions of one document.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import frontmatter
from pydantic import Field, field_validator

from contextd.connectors.base import ConnectorConfig, chunked, file_state, to_utc
from contextd.core.errors import ConfigError
from contextd.core.types import (
    PUBLIC,
    Batch,
    RecordFailure,
    SourceRecord,
    Tombstone,
    is_valid_principal,
)

DEFAULT_INCLUDE = ["**/*.md", "**/*.markdown", "**/*.txt", "**/*.html", "**/*.htm",
                   "**/*.pdf", "**/*.docx"]
BATCH_SIZE = 100


def _principals(value: list[str]) -> list[str]:
    bad = [p for p in value if not is_valid_principal(p)]
    if bad:
        raise ValueError(f"invalid principals {bad}: use public, user:<id> or group:<id>")
    return value


class AclRule(ConnectorConfig):
    glob: str = Field(min_length=1)
    principals: list[str] = Field(min_length=1)

    @field_validator("principals")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return _principals(value)


class FilesystemConfig(ConnectorConfig):
    path: str = Field(min_length=1)
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE), min_length=1)
    acl: list[AclRule] = Field(default_factory=list)
    default_acl: list[str] = Field(default_factory=lambda: [PUBLIC], min_length=1)

    @field_validator("default_acl")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return _principals(value)


def matches(relpath: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(relpath, pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(relpath, pattern[3:])


def extract(path: Path) -> tuple[str, dict[str, Any], str]:
    """(text, front matter, title found in the content) of one file."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown", ".txt"):
        post = frontmatter.loads(path.read_text(encoding="utf-8"))
        title = next((line.lstrip("#").strip() for line in post.content.splitlines()
                      if line.startswith("# ")), "")
        return post.content, dict(post.metadata), title
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "html.parser")
        for tag in soup(["script", "style"]):
            tag.decompose()
        title = soup.title.get_text(strip=True) if soup.title else ""
        body = soup.body or soup
        return body.get_text("\n", strip=True), {}, title
    if suffix == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        meta_title = str(reader.metadata.title) if reader.metadata and reader.metadata.title \
            else ""
        return "\n\n".join(page.extract_text() or "" for page in reader.pages), {}, meta_title
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        return ("\n".join(p.text for p in document.paragraphs),
                {}, document.core_properties.title or "")
    raise ValueError(f"unsupported file type {suffix!r}")


class FilesystemConnector:
    """Documents from a directory tree, re-read only when their mtime or size changes."""

    kind: ClassVar[str] = "filesystem"
    Config: ClassVar[type[ConnectorConfig]] = FilesystemConfig

    def __init__(self, name: str, config: FilesystemConfig) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path).expanduser()
        self._fingerprint = hashlib.sha256(json.dumps(
            config.model_dump(exclude={"path"}), sort_keys=True).encode()).hexdigest()[:16]

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"path {str(self.root)!r} is not a readable directory",
                              details=[{"field": "config.path"}])

    def _files(self) -> dict[str, Path]:
        self.check()
        found = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(self.root).as_posix()
                if any(matches(rel, g) for g in self.config.include):
                    found[rel] = path
        return found

    def list_ids(self) -> set[str]:
        return set(self._files())

    def acl_for(self, relpath: str) -> list[str]:
        for rule in self.config.acl:
            if matches(relpath, rule.glob):
                return rule.principals
        return self.config.default_acl

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        files = self._files()
        previous = dict((cursor or {}).get("files", {}))
        if (cursor or {}).get("config") != self._fingerprint:
            previous = {}  # ACL rules or globs changed: re-read all (hashes skip the rest)
        state = {rel: st for rel, st in previous.items() if rel in files}
        gone = sorted(set(previous) - set(files))
        changed = [rel for rel, path in files.items() if previous.get(rel) != file_state(path)]
        tombstones = [Tombstone(self.name, rel) for rel in gone]
        if not changed:
            yield Batch(tombstones=tombstones, cursor=self._cursor(state))
            return
        for group in chunked(changed, BATCH_SIZE):
            records, failures = [], []
            for rel in group:
                try:
                    records.append(self.to_record(rel, files[rel]))
                    state[rel] = file_state(files[rel])
                except Exception as exc:  # any parse error becomes a failure value
                    failures.append(RecordFailure(self.name, rel, f"{type(exc).__name__}: {exc}"))
            yield Batch(records=records, tombstones=tombstones, failures=failures,
                        cursor=self._cursor(state))
            tombstones = []

    def _cursor(self, state: dict[str, list[int]]) -> dict[str, Any]:
        return {"config": self._fingerprint, "files": dict(state)}

    def to_record(self, relpath: str, path: Path) -> SourceRecord:
        text, meta, content_title = extract(path)
        if "updated_at" in meta:
            updated_at = to_utc(meta["updated_at"])
        else:
            updated_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        acl = meta.get("acl") or self.acl_for(relpath)
        if not isinstance(acl, list) or not acl:
            raise ValueError("front matter acl must be a non-empty list")
        _principals([str(p) for p in acl])
        return SourceRecord(
            source=self.name, source_id=relpath, kind="document",
            title=str(meta.get("title") or content_title or path.stem),
            text=text, updated_at=updated_at, acl=tuple(str(p) for p in acl),
            uri=path.resolve().as_uri(), author=str(meta.get("author") or ""),
            entity_key=str(meta.get("entity") or f"file:{relpath}"),
            fields={k: str(v) for k, v in meta.items() if k not in ("acl",)},
        )
