"""The redaction hook: Luhn-checked card numbers, national ids, configured patterns."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.core.tokens import count_tokens
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


def _item(cid: str, title: str, text: str) -> BundleItem:
    return BundleItem(id=cid, kind="document", source="s", source_id=cid, title=title, uri="",
                      text=text, updated_at="", score=1, relevance=1, freshness=1, citation="",
                      tokens=count_tokens(f"{title}\n{text}"))


def test_masks_longer_than_what_they_hide_never_push_a_bundle_over_its_budget() -> None:
    # An SSN is 6 cl100k tokens, its mask 10: a bundle packed to the last token grows.
    ssns = " ".join(f"{100 + i}-45-6789" for i in range(8))
    items = [_item("a", "HR record", f"Employee SSNs: {ssns}."),
             _item("b", "Notes", "plain words " * 30)]
    memory = [{"query": "ssn 123-45-6789?", "summary": "", "tokens": count_tokens(
        "ssn 123-45-6789?")}]
    budget = sum(i.tokens for i in items) + memory[0]["tokens"]
    bundle = ContextBundle(bundle_id="b", query="q", user_id="u",
                           generated_at=datetime.now(UTC), items=items, memory=memory,
                           token_count=budget, truncated=False, stats={})
    counts = Redactor({}).redact_bundle(bundle, budget)
    assert counts == {"us_ssn": 9}
    assert bundle.token_count <= budget and bundle.truncated
    assert [i.id for i in bundle.items] == ["a"]  # the lowest-ranked item made room
    for item in bundle.items:
        assert item.tokens == count_tokens(f"{item.title}\n{item.text}")
    assert memory[0]["query"] == "ssn [REDACTED:us_ssn]?"
    assert memory[0]["tokens"] == count_tokens("ssn [REDACTED:us_ssn]?")
    assert bundle.token_count == sum(i.tokens for i in bundle.items) + memory[0]["tokens"]


def test_a_bundle_without_matches_is_left_exactly_as_packed() -> None:
    items = [_item("a", "Travel", "Per diem is 45 EUR.")]
    bundle = ContextBundle(bundle_id="b", query="q", user_id="u",
                           generated_at=datetime.now(UTC), items=items, memory=[],
                           token_count=items[0].tokens, truncated=False, stats={})
    assert Redactor({}).redact_bundle(bundle, items[0].tokens) == {}
    assert bundle.token_count == items[0].tokens and not bundle.truncated


_NOISE = st.text(alphabet="0123456789 -ABCEGHJKLMNOPRSTWXYZabcz_.\n", max_size=40)
_MATCHES = st.sampled_from(["", "4111 1111 1111 1111", "4111-1111-1111-1111", "123-45-6789",
                            "AB 12 34 56 C", "QQ123456A", "TCK-123"])


@settings(max_examples=500, deadline=None)
@given(before=_NOISE, match=_MATCHES, after=_NOISE, custom=st.booleans())
def test_the_prescan_finds_exactly_the_texts_some_rule_matches(
        before: str, match: str, after: str, custom: bool) -> None:
    """The joined prescan (with its leading lookahead for the default rules) lets a text
    through unmasked only if no rule matches it, and never sends one that none matches."""
    text = before + match + after
    redactor = Redactor({"ticket": r"TCK-\d{3}"} if custom else {})
    assert redactor._any is not None
    any_rule = any(rule.pattern.search(text) for rule in redactor.rules)
    assert (redactor._any.search(text) is not None) == any_rule
    for padded in (f"x{text}", f"{text}9", f"A{text}"):
        any_rule = any(rule.pattern.search(padded) for rule in redactor.rules)
        assert (redactor._any.search(padded) is not None) == any_rule
