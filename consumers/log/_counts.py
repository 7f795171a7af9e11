"""Skip counts: events acknowledged without a request (filtered, throttled, loop), per subscription and minute.

Such events leave no row in the delivery log, by design; what the stats need of
them is how many. Workers count them in the attempt batches they publish anyway
(:class:`~consumers.SkipCount`), and the recorder adds a batch's counts to
``webhook_skip_counts`` in the transaction that stores its records: one
statement per batch, only when the batch has counts.

The counts are at least once, like the recorder: a batch stored and then
redelivered to the recorder (killed before its acknowledgement) counts twice.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Insert, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .._messages import CountedSkip, SkipCount
from ._views import SKIP_COUNTS, SUBSCRIPTIONS, SubscriptionSkips

__all__ = (
    "SkipTotals",
    "add_skip_counts",
    "merged_counts",
    "read_skip_counts",
    "skip_counts_by_subscription",
    "skip_upsert",
)

_FIELDS: Final[dict[str, str]] = {"filtered": "filtered", "throttled": "throttled", "loop": "loop_stopped"}
"""A reason's name in the stats."""
_TOP: Final = 50


def skip_upsert(dialect_name: str) -> Insert:
    """``INSERT ... ON CONFLICT (subscription, reason, minute) DO UPDATE SET count = count + new``."""
    insert = postgresql_insert if dialect_name == "postgresql" else sqlite_insert
    statement = insert(SKIP_COUNTS)
    return statement.on_conflict_do_update(
        index_elements=["subscription_id", "reason", "minute"],
        set_={"count": SKIP_COUNTS.c.count + statement.excluded.count},
    )


def merged_counts(skips: Sequence[SkipCount]) -> list[dict[str, Any]]:
    """One parameter set per (subscription, reason, minute), in key order.

    Merged first: PostgreSQL refuses an upsert touching one row twice, and a
    fixed order keeps concurrent recorders from deadlocking on the rows.
    """
    totals: dict[tuple[uuid.UUID, str, datetime], int] = defaultdict(int)
    for skip in skips:
        if skip.count > 0:
            totals[(skip.subscription_id, skip.reason, skip.minute)] += skip.count
    return [
        {"subscription_id": sub, "reason": reason, "minute": minute, "count": count}
        for (sub, reason, minute), count in sorted(totals.items(), key=lambda item: (item[0][0].hex, *item[0][1:]))
    ]


async def add_skip_counts(connection: AsyncConnection, upsert: Insert, skips: Sequence[SkipCount]) -> None:
    """Add ``skips`` to the table, in the caller's transaction (nothing when there are none)."""
    params = merged_counts(skips)
    if params:
        await connection.execute(upsert, params)


class SkipTotals:
    """The counts of a stats window: overall per reason, and per subscription."""

    __slots__ = ("by_subscription", "overall")

    def __init__(self) -> None:
        self.overall: dict[CountedSkip, int] = {"filtered": 0, "throttled": 0, "loop": 0}
        self.by_subscription: list[SubscriptionSkips] = []


async def read_skip_counts(session: AsyncSession, since: datetime) -> SkipTotals:
    """The counts of the minutes from the one holding ``since`` on.

    One statement, so the totals and the per-subscription counts agree (on
    PostgreSQL each statement sees the batches committed by then).
    """
    start = since.replace(second=0, microsecond=0)
    totals = SkipTotals()
    rows = await session.execute(
        select(SKIP_COUNTS.c.subscription_id, SUBSCRIPTIONS.c.name, SKIP_COUNTS.c.reason, func.sum(SKIP_COUNTS.c.count))
        .outerjoin(SUBSCRIPTIONS, SUBSCRIPTIONS.c.id == SKIP_COUNTS.c.subscription_id)
        .where(SKIP_COUNTS.c.minute >= start)
        .group_by(SKIP_COUNTS.c.subscription_id, SUBSCRIPTIONS.c.name, SKIP_COUNTS.c.reason)
    )
    per: dict[uuid.UUID, SubscriptionSkips] = {}
    for sub_id, name, reason, total in rows:
        field = _FIELDS.get(reason)
        if field is None:
            continue
        count = int(total or 0)
        totals.overall[reason] += count
        if name is not None:  # a deleted subscription counts in the totals only
            entry = per.setdefault(sub_id, SubscriptionSkips(subscription_id=sub_id, name=name))
            setattr(entry, field, count)
    ranked = sorted(per.values(), key=lambda s: (-(s.filtered + s.throttled + s.loop_stopped), s.name))
    totals.by_subscription = ranked[:_TOP]
    return totals


async def skip_counts_by_subscription(session: AsyncSession, since: datetime) -> dict[uuid.UUID, dict[str, int]]:
    """Every subscription's counts from the minute holding ``since`` on, by stats field name (the health windows)."""
    start = since.replace(second=0, microsecond=0)
    rows = await session.execute(
        select(SKIP_COUNTS.c.subscription_id, SKIP_COUNTS.c.reason, func.sum(SKIP_COUNTS.c.count))
        .where(SKIP_COUNTS.c.minute >= start)
        .group_by(SKIP_COUNTS.c.subscription_id, SKIP_COUNTS.c.reason)
    )
    counts: defaultdict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for sub_id, reason, total in rows:
        if (field := _FIELDS.get(reason)) is not None:
            counts[sub_id][field] = int(total or 0)
    return dict(counts)
