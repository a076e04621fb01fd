"""Feedback on served bundles: a rating and which items the agent actually used.

Feedback is checked against the bundle as it was served (``bundles_served``): the bundle
must exist, the used items must be items of that bundle, and a linked interaction must be
the same user's. The quality metrics read these rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from contextd.core.errors import InvalidInput, NotFound
from contextd.core.types import as_utc
from contextd.state import deferred
from contextd.state.db import session_scope
from contextd.state.tables import BundleServed, FeedbackRow, InteractionRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewFeedback:
    bundle_id: str
    rating: int
    used_item_ids: Sequence[str] = ()
    comment: str | None = None
    interaction_id: str | None = None
    agent: str = ""
    key_id: str = ""


@dataclass(frozen=True, slots=True)
class Feedback:
    id: str
    bundle_id: str
    user_id: str
    rating: int
    used_item_ids: list[str]
    comment: str | None
    interaction_id: str | None
    created_at: datetime


def record_feedback(engine: Engine, memory_engine: Engine, new: NewFeedback,
                    user_allowed: Callable[[str], bool] = lambda _: True) -> Feedback:
    """Validate against the served bundle, then store; nothing is stored on any error.

    A bundle served to a user ``user_allowed`` refuses gets the same answer as an unknown
    bundle, so feedback cannot probe which bundles exist."""
    deferred.flush(engine)  # the bundle's row may still be queued
    with Session(engine) as session:
        bundle = session.get(BundleServed, new.bundle_id)
        if bundle is None or not user_allowed(bundle.user_id):
            raise NotFound(f"bundle {new.bundle_id!r} was not served (or was forgotten)",
                           details=[{"field": "bundle_id"}])
        served = {str(item.get("id")) for item in bundle.items}
        user_id = bundle.user_id
    unknown = [{"field": f"used_item_ids.{i}", "message": f"{item!r} is not in the bundle"}
               for i, item in enumerate(new.used_item_ids) if item not in served]
    if unknown:
        raise InvalidInput("used_item_ids holds items the bundle did not serve",
                           details=unknown)
    if new.interaction_id is not None:
        with Session(memory_engine) as session:
            interaction = session.get(InteractionRow, new.interaction_id)
        if interaction is None or interaction.user_id != user_id:
            raise InvalidInput("interaction_id is not an interaction of the bundle's user",
                               details=[{"field": "interaction_id"}])
    row = FeedbackRow(id=str(uuid.uuid4()), bundle_id=new.bundle_id, user_id=user_id,
                      interaction_id=new.interaction_id, agent=new.agent, key_id=new.key_id,
                      rating=new.rating, used_item_ids=list(dict.fromkeys(new.used_item_ids)),
                      comment=new.comment)
    with session_scope(engine) as session:
        session.add(row)
    log.info("feedback recorded", extra={"event": "feedback", "bundle_id": new.bundle_id,
                                         "rating": new.rating,
                                         "used_items": len(row.used_item_ids)})
    return Feedback(row.id, row.bundle_id, row.user_id, row.rating, row.used_item_ids,
                    row.comment, row.interaction_id, as_utc(row.created_at))
