"""A small live corpus where freshness and BM25 matter, with judged queries.

Each "policy" pair has an old document that matches the query's words best and a newer,
relevant one (a different entity, so supersession plays no part): only the freshness
factor puts the newer one first. Each "code" query names an identifier that only BM25
matches exactly, among documents that are semantically alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contextd.core.types import SourceRecord
from tests.factories import record

OLD = datetime(2019, 3, 1, tzinfo=UTC)
NEW = datetime(2026, 11, 20, tzinfo=UTC)

RECORDS: list[SourceRecord] = [
    record("per-diem-2019", "Travel per diem policy: the travel per diem for employees is "
           "50 dollars per day for meals.", title="Travel per diem policy", updated_at=OLD),
    record("per-diem-2026", "Meal allowance on business trips is now 75 dollars daily for "
           "all staff, replacing the old rule.", title="Business trip meal allowance",
           updated_at=NEW),
    record("vpn-2019", "VPN setup guide: to set up the VPN on a laptop, install the client "
           "and use the VPN setup code from IT.", title="VPN setup guide", updated_at=OLD),
    record("vpn-2026", "Remote network access on laptops now uses the zero-trust agent; "
           "install it from the company portal.", title="Remote access on laptops",
           updated_at=NEW),
    record("parental-2019", "Parental leave policy: parental leave for employees is 12 weeks "
           "of paid leave.", title="Parental leave policy", updated_at=OLD),
    record("parental-2026", "New parents now receive 20 weeks of paid time off, for all "
           "staff, from this year.", title="Time off for new parents", updated_at=NEW),
    record("ticket-a", "Customer refund ticket QX7731: refund approved for order shipped "
           "late.", title="Refund ticket", updated_at=NEW),
    record("ticket-b", "Customer refund request for an order that arrived late; the refund "
           "was approved by support.", title="Refund request", updated_at=NEW),
    record("ticket-c", "Support approved a customer's refund after their order shipped late "
           "and damaged.", title="Late order refund", updated_at=NEW),
    record("invoice-a", "Invoice ZR4409 for the annual software subscription renewal.",
           title="Invoice", updated_at=NEW),
    record("invoice-b", "Invoice for the annual renewal of the software subscription, paid "
           "by card.", title="Subscription invoice", updated_at=NEW),
    record("invoice-c", "The yearly software subscription renewal invoice was sent to "
           "finance.", title="Renewal invoice", updated_at=NEW),
]

QUERIES: dict[str, str] = {
    "q-per-diem": "What is the travel per diem for employees?",
    "q-vpn": "How do I set up the VPN on my laptop?",
    "q-parental": "What is the parental leave policy for employees?",
    "q-ticket": "status of refund ticket QX7731",
    "q-invoice": "invoice ZR4409 subscription",
}

QRELS: dict[str, dict[str, int]] = {
    "q-per-diem": {"per-diem-2026": 2, "per-diem-2019": 0},
    "q-vpn": {"vpn-2026": 2},
    "q-parental": {"parental-2026": 2},
    "q-ticket": {"ticket-a": 2},
    "q-invoice": {"invoice-a": 2},
}
