"""Identifier-like tokens, their joined BM25 term, and exact matches of a record."""

from __future__ import annotations

import pytest

from contextd.core.codes import compact_terms, identifiers, is_identifier, with_codes
from contextd.core.embedder import Bm25Encoder
from contextd.retrieval.exact import exact_terms


@pytest.mark.parametrize("token", ["INV-2024-0042", "D-101", "AB12CD", "TCK-58213", "v2.4.1",
                                   "PO-7781-B"])
def test_codes_are_identifiers(token: str) -> None:
    assert is_identifier(token)


@pytest.mark.parametrize("token", ["2024", "invoice", "Q3", "R2", "", "a-b"])
def test_words_years_and_short_codes_are_not(token: str) -> None:
    assert not is_identifier(token)


def test_identifiers_in_order_without_repeats() -> None:
    assert identifiers("Is INV-2024-0042 paid? See D-101, and INV-2024-0042 again.") == [
        "INV-2024-0042", "D-101"]
    assert compact_terms("INV-2024-0042 or AB12CD") == ["inv20240042"]


def test_the_tokenizer_splits_codes_and_the_joined_term_tells_them_apart() -> None:
    """Edge's BM25 splits at dashes and drops the 'd' of D-101 (a stopword): the query
    D-101 is the query 101. The joined term added by ``with_codes`` is what differs."""
    bm25 = Bm25Encoder()
    plain = bm25._model.embed_query("D-101")
    assert list(plain.indices) == list(bm25._model.embed_query("101").indices)
    assert len(bm25._model.embed_query("INV-2024-0042").indices) == 3
    assert set(bm25.encode_query("D-101").indices) > set(bm25.encode_query("101").indices)
    assert with_codes("invoice INV-2024-0042") == "invoice INV-2024-0042\ninv20240042"
    assert with_codes("no codes here") == "no codes here"
    doc = bm25.terms("Invoice INV-2024-0042 for Globex")
    assert set(bm25.encode_query("INV-2024-0042").indices) <= doc
    assert not set(bm25.encode_query("INV-2024-0043").indices) <= doc


def test_exact_matches_identifiers_phrases_and_subjects() -> None:
    terms = exact_terms('status of INV-2024-0042 and "per diem of 45 EUR"')
    assert terms.matched("Invoice", "Invoice inv-2024-0042 is overdue") == ["INV-2024-0042"]
    assert terms.matched("Invoice", "Invoice INV-2024-00421 is overdue") == []
    assert terms.matched("Travel", "a per  diem of 45 EUR per day") == ['"per diem of 45 eur"']
    subject = exact_terms("Q3 delivery delay for Globex Lyon site")
    assert subject.matched("Re: Q3 delivery delay for Globex Lyon site", "...") == [
        "title:Re: Q3 delivery delay for Globex Lyon site"]
    assert subject.matched("Re: Q3 delivery delay for Initech Lyon site", "...") == []
    assert exact_terms("pricing").matched("Pricing", "x") == ["title:Pricing"]
