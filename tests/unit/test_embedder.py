"""The traced query graph gives the eager model's vectors, for any query the API admits."""

from __future__ import annotations

import numpy as np
import pytest

from contextd.core.embedder import SentenceTransformerEncoder

QUERIES = [
    "x",
    "what is the effect of vitamin d on bone density in older adults?",
    "Ünïcödé — query? with punctuation!! 東京 €45",
    "word " * 600,  # past the model's 256-token window: truncated alike
    "   leading and trailing space   ",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_graph_matches_the_eager_model(encoder: SentenceTransformerEncoder,
                                             query: str) -> None:
    assert encoder._query_graph is not None, "the bundled model must trace"
    assert encoder._query_graph._tokenize.__name__ == "direct"  # its own tokenizer, checked
    traced = encoder.encode_query(query)
    eager = encoder.model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert traced.dtype == np.float32 and traced.shape == eager.shape
    assert np.abs(traced - eager).max() < 1e-5
    assert abs(float(np.linalg.norm(traced)) - 1.0) < 1e-5


def test_documents_and_queries_share_one_space(encoder: SentenceTransformerEncoder) -> None:
    text = "Support tickets are answered within four business hours."
    (document,) = encoder.encode_documents([text])
    assert float(document @ encoder.encode_query(text)) > 0.9999
