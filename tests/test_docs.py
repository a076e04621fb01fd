"""Generated reference pages match the code, and comments and settings carry no history."""

from __future__ import annotations

import re
from pathlib import Path

from contextd.connectors.registry import CONNECTORS
from contextd.core.settings import Settings
from contextd.docs import PAGES, stale

REPO = Path(__file__).resolve().parents[1]


def test_generated_pages_are_current() -> None:
    old = stale(REPO)
    assert not old, f"stale generated docs {old}: run `make docs` and commit the result"


def test_every_setting_and_config_field_is_described() -> None:
    missing = [f"CONTEXTD_{n.upper()}" for n, f in Settings.model_fields.items()
               if not f.description]
    for kind, cls in CONNECTORS.items():
        missing += [f"{kind}.{n}" for n, f in cls.Config.model_fields.items()
                    if not f.description]
    assert not missing, f"add a Field(description=...) to {missing}, then run `make docs`"


def test_connector_page_names_every_kind_field_and_secret() -> None:
    page = PAGES["docs/connectors.md"]()
    for kind, cls in CONNECTORS.items():
        section = page.split(f"## `{kind}`", 1)[1].split("\n## ", 1)[0]
        for field in cls.Config.model_fields:
            assert f"| `{field}` |" in section, (kind, field)
    imap = page.split("## `imap`", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| `password` \| secret string \| required \| yes, write-only \|", imap)


HISTORY = re.compile(r"#.*\b(issue \d+|stop \d+|measured before)\b", re.IGNORECASE)


def test_code_comments_explain_the_code_not_its_history() -> None:
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "src").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if HISTORY.search(line)]
    assert not found, "\n".join(found)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_in_the_readme_and_docs_resolve() -> None:
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
