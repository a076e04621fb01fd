"""Identifier-like tokens (``AB12CD``, ``D-101``, ``INV-2024-0042``) and their joined forms.

The BM25 tokenizer splits ``INV-2024-0042`` into ``inv``, ``2024`` and ``0042`` and drops
the ``d`` of ``D-101``, so the records of one year share most of an identifier's lexical
evidence. Documents and queries are encoded with each such code's joined form
(``inv20240042``) as one more term, which only the records bearing the whole code share.
"""

from __future__ import annotations

import re

# Segments of letters and digits joined by - _ / . (a trailing dot is punctuation).
_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9]+(?:[-_/.][A-Za-z0-9]+)*")
_SEPARATORS = "-_/."


def is_identifier(token: str) -> bool:
    """Looks like a code: at least 3 characters with a digit, and a letter or a separator;
    plain numbers and years are not."""
    if len(token) < 3 or not any(c.isdigit() for c in token):
        return False
    return any(c.isalpha() for c in token) or any(c in _SEPARATORS for c in token)


def identifiers(text: str) -> list[str]:
    """Identifier-like tokens of ``text``, in order, without repeats (case kept)."""
    return list(dict.fromkeys(t for t in _TOKEN.findall(text) if is_identifier(t)))


def compact_terms(text: str) -> list[str]:
    """Joined forms of the identifiers that have separators (``INV-2024-0042`` ->
    ``inv20240042``)."""
    return [re.sub(r"[-_/.]", "", t).lower() for t in identifiers(text)
            if any(c in _SEPARATORS for c in t)]


def with_codes(text: str) -> str:
    """``text`` followed by the joined form of each of its codes with separators."""
    if not any(c in _SEPARATORS for c in text):
        return text
    codes = compact_terms(text)
    return f"{text}\n{' '.join(codes)}" if codes else text
