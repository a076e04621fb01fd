"""Exact matches in a query: identifier-like tokens, quoted phrases, a record's title.

Why: the BM25 tokenizer splits ``INV-2024-0042`` into ``inv``, ``2024`` and ``0042`` (and
drops the ``d`` of ``D-101``), so every record of 2024 shares most of the lexical evidence
and a fresher record of the same kind can outrank the one bearing the identifier. The
encoder adds each identifier's joined form as one more term (:mod:`contextd.core.codes`),
which makes the record retrievable; the ranker then checks the candidates' text for the
exact token and puts those that bear it first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from contextd.core.codes import identifiers

_QUOTED = re.compile(r"\"([^\"]{2,200})\"|“([^”]{2,200})”|'([^']{4,200})'")
_SUBJECT_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw|wg)\s*:\s*)+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_MIN_TITLE_WORDS = 3


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def subject(title: str) -> str:
    """A title as compared with a query: reply/forward prefixes off, spaces collapsed."""
    return normalize(_SUBJECT_PREFIX.sub("", title.strip()))


@dataclass(frozen=True, slots=True)
class ExactTerms:
    """What in a query asks for an exact match."""

    identifiers: tuple[str, ...]
    phrases: tuple[str, ...]
    query: str  # normalized, for title matches

    def __bool__(self) -> bool:
        return bool(self.identifiers or self.phrases or self.query)

    def matched(self, title: str, text: str) -> list[str]:
        """The identifiers, phrases and title this record matches exactly."""
        out = [i for i in self.identifiers if _identifier_pattern(i).search(title)
               or _identifier_pattern(i).search(text)]
        if self.phrases:
            body = normalize(f"{title}\n{text}")
            out.extend(f'"{p}"' for p in self.phrases if p in body)
        name = subject(title)
        if name and (name == self.query or (len(name.split()) >= _MIN_TITLE_WORDS
                                            and name in self.query)):
            out.append(f"title:{title.strip()}")
        return out


def exact_terms(query: str) -> ExactTerms:
    phrases = tuple(dict.fromkeys(normalize(next(g for g in m.groups() if g))
                                  for m in _QUOTED.finditer(query)))
    return ExactTerms(identifiers=tuple(identifiers(query)),
                      phrases=tuple(p for p in phrases if p), query=subject(query))


@lru_cache(maxsize=1024)
def _identifier_pattern(token: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", re.IGNORECASE)
