"""Is a configured SQL text exactly one SELECT? A tokenizer that knows where ``;`` counts.

No SQL parser is installed, and none is needed for this question: a statement separator
is a ``;`` outside string literals, quoted identifiers and comments. Dialects disagree on
those (MySQL escapes quotes with backslashes and starts comments with ``#``; PostgreSQL
nests ``/* */`` and has ``$tag$`` quotes; SQLite nests nothing), so the text is read the
way each of them would, and a ``;`` that any reading sees between tokens is refused, even
a trailing one (the query is used as a subquery). No dialect can then find a second
statement where this module saw none. The first word must start a query (``SELECT``,
``WITH``, ``VALUES``, ``TABLE``); writes hidden deeper (a CTE that deletes, a function
with side effects) are stopped by the read-only transaction the connector runs in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUERY_STARTS = frozenset({"select", "with", "values", "table"})
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True)
class Reading:
    """How one family of dialects delimits literals and comments."""

    nested_comments: bool = False
    dollar_quotes: bool = False
    backslash_strings: bool = False  # ``\'`` escapes a quote in every '...' literal
    hash_comments: bool = False
    dash_comment_needs_space: bool = False  # MySQL: ``--x`` is minus minus x


POSTGRES = Reading(nested_comments=True, dollar_quotes=True)
READINGS = (POSTGRES,
            Reading(nested_comments=True, dollar_quotes=True, backslash_strings=True),
            Reading(),  # SQLite and the standard
            Reading(backslash_strings=True, hash_comments=True, dash_comment_needs_space=True))


def _skip_quoted(text: str, start: int, close: str, *, backslash: bool = False) -> int:
    """Index after the literal opened at ``start`` (a doubled ``close`` escapes itself)."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == close:
            if text.startswith(close, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    raise ValueError("unterminated quote or identifier in query")


def _skip_block_comment(text: str, start: int, *, nested: bool) -> int:
    if not nested:
        end = text.find("*/", start + 2)
        if end < 0:
            raise ValueError("unterminated /* comment in query")
        return end + 2
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ValueError("unterminated /* comment in query")


def _line_comment_at(text: str, i: int, reading: Reading) -> bool:
    if reading.hash_comments and text[i] == "#":
        return True
    if not text.startswith("--", i):
        return False
    return not reading.dash_comment_needs_space or i + 2 >= len(text) or \
        text[i + 2] in " \t\r\n\f\v"


def code_outside_literals(text: str, reading: Reading = POSTGRES) -> str:
    """``text`` with every literal, quoted identifier and comment replaced by a space."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "'":
            escape_string = i > 0 and text[i - 1] in "eE" and (
                i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i = _skip_quoted(text, i, "'",
                             backslash=reading.backslash_strings or escape_string)
            out.append(" ")
        elif char in '"`':
            i = _skip_quoted(text, i, char, backslash=reading.backslash_strings and char == '"')
            out.append(" ")
        elif _line_comment_at(text, i, reading):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            out.append(" ")
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i, nested=reading.nested_comments)
            out.append(" ")
        elif reading.dollar_quotes and char == "$" and (tag := _DOLLAR_TAG.match(text, i)) \
                and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find(tag.group(0), tag.end())
            if end < 0:
                raise ValueError("unterminated dollar-quoted string in query")
            i = end + len(tag.group(0))
            out.append(" ")
        else:
            out.append(char)
            i += 1
    return "".join(out)


def single_select(query: str) -> str:
    """``query`` if it is one statement that starts a query; ValueError saying why not."""
    for reading in READINGS:
        if ";" in code_outside_literals(query, reading):
            raise ValueError("query must be exactly one SELECT statement, without ';' "
                             "(a second statement is never run)")
    first = _WORD.search(code_outside_literals(query))
    if first is None or first.group(0).lower() not in _QUERY_STARTS:
        raise ValueError("query must be a SELECT (or WITH/VALUES/TABLE) statement")
    return query
