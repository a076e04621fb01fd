"""The redaction hook: Luhn-checked card numbers, national ids, configured patterns."""

from __future__ import annotations

from datetime import UTC, datetime

from contextd.retrieval.redaction import Redactor, luhn_ok
from contextd.retrieval.schemas import BundleItem, ContextBundle


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def test_cards_are_masked_only_when_the_checksum_holds() -> None:
    redactor = Redactor({})
    text, counts = redactor.redact(
        "Visa 4111 1111 1111 1111, Amex 3782-822463-10005, order 1234 5678 9012 3456.")
    assert "4111" not in text and "3782" not in text
    assert text.count("[REDACTED:card_number]") == 2
    assert "1234 5678 9012 3456" in text  # fails Luhn: an order number, left alone
    assert counts == {"card_number": 2}


def test_national_ids_and_configured_patterns() -> None:
    redactor = Redactor({"employee_id": r"\bEMP-\d{6}\b"})
    text, counts = redactor.redact(
        "SSN 123-45-6789, not 000-12-3456; NINO AB 12 34 56 C; badge EMP-004211.")
    assert "123-45-6789" not in text and "000-12-3456" in text
    assert "AB 12 34 56 C" not in text and "EMP-004211" not in text
    assert counts == {"us_ssn": 1, "uk_nino": 1, "employee_id": 1}
    plain = Redactor({"employee_id": r"\bEMP-\d{6}\b"}, defaults=False)
    assert plain.redact("4111 1111 1111 1111")[1] == {}


def test_bundle_text_and_titles_are_masked_and_recounted() -> None:
    item = BundleItem(id="c1", kind="document", source="s", source_id="d",
                      title="Card 4111111111111111", uri="",
                      text="Pay with 4111 1111 1111 1111 today. " * 3,
                      updated_at="", score=1, relevance=1, freshness=1, citation="", tokens=60)
    bundle = ContextBundle(bundle_id="b", query="q", user_id="u",
                           generated_at=datetime.now(UTC), items=[item], memory=[],
                           token_count=60, truncated=False, stats={})
    counts = Redactor({}).redact_bundle(bundle)
    assert counts == {"card_number": 4}
    assert "4111" not in item.text and "4111" not in item.title
    assert bundle.token_count == item.tokens < 60
