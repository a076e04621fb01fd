"""Split records into chunks with LlamaIndex node parsers, sized in cl100k tokens.

Markdown is split on headings first (MarkdownNodeParser) so a chunk never spans two
sections; email drops quoted reply lines (the quoted message is its own record); the rest
goes through SentenceSplitter, which keeps sentences whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from llama_index.core import Document
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

from contextd.core.tokens import encoding
from contextd.core.types import SourceRecord

_QUOTED = re.compile(r"^\s*>.*$\n?", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^On .{5,200} wrote:\s*$", re.MULTILINE)
_BLANKS = re.compile(r"\n{3,}")
_MARKDOWN_SUFFIXES = (".md", ".markdown")


def normalize(text: str) -> str:
    """Unify newlines and collapse runs of blank lines and trailing spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def strip_quoted_reply(text: str) -> str:
    """Remove ``>`` quoted lines and their "On ... wrote:" attribution."""
    return _ATTRIBUTION.sub("", _QUOTED.sub("", text))


@dataclass
class Chunker:
    """Chunks of at most ``chunk_size`` cl100k tokens with ``chunk_overlap`` overlap."""

    chunk_size: int = 200
    chunk_overlap: int = 20

    @cached_property
    def _sentences(self) -> SentenceSplitter:
        return SentenceSplitter(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap,
                                tokenizer=lambda t: encoding().encode(t, disallowed_special=()))

    @cached_property
    def _markdown(self) -> MarkdownNodeParser:
        return MarkdownNodeParser(include_metadata=False, include_prev_next_rel=False)

    def split(self, record: SourceRecord) -> list[str]:
        """Chunk texts of ``record``, in order; empty text gives no chunks."""
        text = normalize(record.text)
        if record.kind == "email":
            text = normalize(strip_quoted_reply(text))
        if not text:
            return []
        if record.kind == "document" and record.uri.lower().endswith(_MARKDOWN_SUFFIXES):
            sections = [n.get_content() for n in
                        self._markdown.get_nodes_from_documents([Document(text=text)])]
        else:
            sections = [text]
        chunks: list[str] = []
        for section in sections:
            chunks.extend(c for c in self._sentences.split_text(section) if c.strip())
        return chunks
