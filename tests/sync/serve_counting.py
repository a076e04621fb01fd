"""``contextd serve`` with every document text it embeds appended to a log file.

Used by the kill-and-resume test to count embeddings across a SIGKILL: each line is
written and fsynced after the encoder returns, so it survives the kill.
Usage: python serve_counting.py LOG_PATH PORT
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from contextd.cli import main
from contextd.core import embedder

_embed = embedder.SentenceTransformerEncoder.embed_documents


def counting(self: embedder.SentenceTransformerEncoder, texts: Sequence[str]) -> Any:
    vectors = _embed(self, texts)
    with open(sys.argv[1], "a", encoding="utf-8") as log:
        log.write("".join(t.replace("\n", " ") + "\n" for t in texts))
        log.flush()
        os.fsync(log.fileno())
    return vectors


embedder.SentenceTransformerEncoder.embed_documents = counting  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["serve", "--port", sys.argv[2]]))
