"""Generated suites for the ranking bench: identifier lookups, dated version pairs and
no-answer queries, plus seeded realistic dates for the public BEIR corpora.

Everything is drawn from one seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contextd.core.types import PUBLIC, SourceRecord

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SOURCE = "bench"

_CUSTOMERS = ["Acme Logistics", "Globex", "Initech", "Umbrella Retail", "Stark Freight",
              "Wayne Foods", "Hooli Cargo", "Vandelay Imports", "Soylent Grocers",
              "Cyberdyne Parts", "Tyrell Pharma", "Wonka Sweets", "Oscorp Labs",
              "Gringotts Bank", "Duff Beverages", "Pied Piper", "Massive Dynamic",
              "Virtucon", "Nakatomi Trading", "Monarch Paper"]
_STATUSES = ["open", "paid", "overdue", "disputed", "escalated", "closed", "on hold"]
_TOPICS = ["travel", "remote work", "parental leave", "expense", "hardware refresh",
           "training budget", "on-call", "relocation", "company car", "mobile phone",
           "home office", "conference attendance", "overtime", "sick leave", "bonus",
           "referral", "sabbatical", "equipment loan", "meal allowance", "commuting",
           "visa support", "gym subsidy", "childcare", "data retention", "password",
           "vendor onboarding", "procurement", "gift and hospitality", "hiring approval",
           "shift swap"]
_REGIONS = ["Germany", "France", "the Netherlands", "Spain", "Poland", "Italy"]


def seeded_age(rng: random.Random) -> timedelta:
    """A realistic document age: half from the last year, the rest spread over six years
    (corpora are mostly recent work on top of a long tail)."""
    days = rng.uniform(0, 365) if rng.random() < 0.5 else rng.uniform(0, 6 * 365)
    return timedelta(days=days, seconds=rng.randrange(86400))


def dated(records: Iterator[SourceRecord], seed: int) -> Iterator[SourceRecord]:
    """The same records with seeded dates over the last six years."""
    rng = random.Random(seed)
    for r in records:
        yield SourceRecord(source=r.source, source_id=r.source_id, kind=r.kind, title=r.title,
                           text=r.text, updated_at=NOW - seeded_age(rng), acl=r.acl,
                           updated_at_source="seeded")


@dataclass
class Suite:
    """Records to index and judged queries: ``expect`` maps a query to what must rank."""

    records: list[SourceRecord] = field(default_factory=list)
    identifier_queries: list[tuple[str, str]] = field(default_factory=list)  # (query, id)
    current_queries: list[tuple[str, str, str]] = field(default_factory=list)  # q, new, old
    old_queries: list[tuple[str, str]] = field(default_factory=list)  # (query, old id)
    answerable: list[str] = field(default_factory=list)
    no_answer: list[str] = field(default_factory=list)


def _record(source_id: str, kind: str, title: str, text: str, age: timedelta,
            entity: str = "") -> SourceRecord:
    return SourceRecord(source=SOURCE, source_id=source_id, kind=kind, title=title, text=text,
                        updated_at=NOW - age, acl=(PUBLIC,), entity_key=entity,
                        updated_at_source="seeded")


def identifier_suite(suite: Suite, rng: random.Random, n: int = 60) -> None:
    """Records of one kind that differ mostly by their identifier, of random ages; a query
    names one identifier, and the record bearing it must rank first."""
    formats = [
        ("invoice", "crm", lambda i: f"INV-{rng.choice([2023, 2024, 2025, 2026])}-{i:04d}",
         "Invoice {id} for {c}: {amount} EUR for fleet licences and spare parts, status "
         "{s}. Payment terms 30 days; contact the finance desk for copies."),
        ("deal", "crm", lambda i: f"D-{100 + i}",
         "Deal {id} with {c}: renewal of the Northwind R2 fleet, {amount} EUR, stage "
         "{s}. Next step: pricing review with the sales director."),
        ("ticket", "email", lambda i: f"TCK-{rng.randrange(10000, 99999)}",
         "Support ticket {id} from {c}: robots pause at aisle intersections after the "
         "firmware update. Priority high, status {s}."),
        ("reference", "document", lambda i: "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ")
                                                     for _ in range(2))
         + f"{rng.randrange(10, 99)}" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ")
                                                for _ in range(2)),
         "Shipment reference {id}: spare battery packs for {c}, {amount} EUR, customs "
         "status {s}."),
    ]
    asks = {"invoice": ["What is the status of invoice {id}?", "{id}", "invoice {id} amount"],
            "deal": ["Where are we with deal {id}?", "{id} next step", "deal {id}"],
            "ticket": ["Any update on ticket {id}?", "{id}", "{id} firmware pause"],
            "reference": ["shipment {id}", "{id}", "customs status of {id}"]}
    seen: set[str] = set()
    for label, kind, make_id, template in formats:
        for i in range(n):
            ident = make_id(i)
            if ident in seen:
                continue
            seen.add(ident)
            text = template.format(id=ident, c=rng.choice(_CUSTOMERS),
                                   amount=f"{rng.randrange(5, 900) * 1000:,}",
                                   s=rng.choice(_STATUSES))
            source_id = f"{label}/{ident}"
            suite.records.append(_record(source_id, kind, f"{label.title()} {ident}", text,
                                         seeded_age(rng)))
            if rng.random() < 0.5:
                suite.identifier_queries.append(
                    (rng.choice(asks[label]).format(id=ident), source_id))
    # Email subjects: a query quoting a subject exactly gets that thread first.
    for i in range(30):
        c = _CUSTOMERS[i % len(_CUSTOMERS)]
        subject = f"{rng.choice(['Q1', 'Q2', 'Q3', 'Q4'])} delivery delay for {c} " \
                  f"{rng.choice(['Rotterdam', 'Lyon', 'Hamburg', 'Milan'])} site"
        source_id = f"mail/subject-{i}"
        suite.records.append(_record(
            source_id, "email", f"Re: {subject}",
            f"Subject: Re: {subject}\nThe delivery of robots to {c} slips by "
            f"{rng.randrange(2, 9)} weeks; the customer asked for a revised plan.",
            seeded_age(rng)))
        if i % 2 == 0:
            suite.identifier_queries.append((subject, source_id))


def version_suite(suite: Suite, rng: random.Random) -> None:
    """Two dated versions per policy with different figures: a plain question gets the
    current one first; a query quoting the old figures gets the old one in the top 3."""
    for n, topic in enumerate(_TOPICS):
        region = _REGIONS[n % len(_REGIONS)]
        entity = f"policy:{topic.replace(' ', '-')}"
        old_year = rng.choice([2022, 2023, 2024])
        new_year = rng.choice([2025, 2026])
        old_figs = (rng.randrange(20, 60), rng.randrange(100, 400))
        new_figs = (old_figs[0] + rng.randrange(5, 30), old_figs[1] + rng.randrange(20, 150))
        ids = []
        for year, (a, b) in ((old_year, old_figs), (new_year, new_figs)):
            title = f"{topic.title()} policy"
            text = (f"{title} ({year}) for staff in {region}. The {topic} allowance is {a} "
                    f"EUR per day and the yearly cap is {b} EUR. Requests go to the line "
                    f"manager; receipts are kept for seven years.")
            source_id = f"policies/{topic.replace(' ', '-')}-{year}.md"
            ids.append(source_id)
            age = NOW - datetime(year, rng.randrange(1, 12), rng.randrange(1, 28), tzinfo=UTC)
            suite.records.append(_record(source_id, "document", title, text, age, entity))
        old_id, new_id = ids
        suite.current_queries.append(
            (f"What is the {topic} allowance per day?", new_id, old_id))
        suite.old_queries.append(
            (f"{topic} policy allowance {old_figs[0]} EUR per day, cap {old_figs[1]} EUR",
             old_id))


NO_ANSWER_TEMPLATES = [
    "What is the warranty period of the {x} drone?",
    "Who is the head of marketing at {x}?",
    "How many vacation days do interns get in {y}?",
    "What was the outcome of the {x} lawsuit?",
    "When does the {x} satellite launch?",
    "What is the recipe for {x} soup?",
    "Which football club won the {y} cup final?",
    "What is the airport code of {x} island?",
]
_NAMES = ["Zephyrion", "Quarkle", "Blorvex", "Tindermoss", "Xanthic", "Glimmerfall",
          "Pravonia", "Heliodrax", "Murkwater", "Snelgrove"]


def no_answer_queries(rng: random.Random, n: int = 40) -> list[str]:
    """Questions about things no corpus here mentions (made-up names and topics)."""
    out = []
    for _ in range(n):
        template = rng.choice(NO_ANSWER_TEMPLATES)
        out.append(template.format(x=rng.choice(_NAMES), y=rng.choice(["1987", "2031",
                                                                      "Atlantis"])))
    return list(dict.fromkeys(out))


def generated(seed: int = 20) -> Suite:
    rng = random.Random(seed)
    suite = Suite()
    identifier_suite(suite, rng)
    version_suite(suite, rng)
    suite.answerable = [q for q, _ in suite.identifier_queries] + \
        [q for q, _, _ in suite.current_queries]
    suite.no_answer = no_answer_queries(rng)
    return suite
