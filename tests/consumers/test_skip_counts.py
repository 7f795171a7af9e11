"""Skip counts in SQL (SQLite and PostgreSQL): added per batch, merged per minute, read by the stats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from consumers._messages import SkipCount
from consumers.log._database import Database
from consumers.log._store import DeliveryStore, SubscriptionStore

from .test_store import NO_DISABLE, make_attempt, make_subscription

MINUTE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


def _skip(sub_id: uuid.UUID, reason: str, count: int, minutes: int = 0) -> SkipCount:
    return SkipCount(
        subscription_id=sub_id,
        reason=reason,  # type: ignore[arg-type]
        minute=MINUTE + timedelta(minutes=minutes),
        count=count,
    )


async def test_counts_add_up_across_batches_minutes_and_reasons(db: Database) -> None:
    subs = SubscriptionStore(db)
    busy, other = await subs.create(make_subscription(name="busy")), await subs.create(make_subscription(name="other"))
    gone = uuid.uuid4()  # a subscription deleted before its counts arrived: in the totals only
    deliveries = DeliveryStore(db)
    # Counts alone (no attempts); one key twice in a batch (PostgreSQL refuses an upsert touching a row twice).
    await deliveries.record([], skips=[_skip(busy.id, "filtered", 3), _skip(busy.id, "filtered", 2)], **NO_DISABLE)
    # With attempts, in the same transaction; the same minute again, a new minute, other reasons.
    attempt = make_attempt(busy, uuid.uuid4(), 1, "success", MINUTE)
    skips = [_skip(busy.id, "filtered", 4), _skip(busy.id, "filtered", 1, minutes=1), _skip(busy.id, "throttled", 7)]
    result = await deliveries.record([attempt], skips=skips, **NO_DISABLE)
    assert result.recorded == 1
    await deliveries.record([], skips=[_skip(other.id, "loop", 2), _skip(gone, "filtered", 5)], **NO_DISABLE)
    # Before the window: not counted.
    await deliveries.record([], skips=[_skip(busy.id, "filtered", 100, minutes=-120)], **NO_DISABLE)

    stats = await deliveries.stats(MINUTE + timedelta(seconds=30))  # the window's first minute counts whole
    assert (stats.filtered, stats.throttled, stats.loop_stopped) == (3 + 2 + 4 + 1 + 5, 7, 2)
    by_name = {s.name: (s.filtered, s.throttled, s.loop_stopped) for s in stats.skips_by_subscription}
    assert by_name == {"busy": (10, 7, 0), "other": (0, 0, 2)}
    assert [s.name for s in stats.skips_by_subscription] == ["busy", "other"]  # most first

    later = await deliveries.stats(MINUTE + timedelta(minutes=1))
    assert later.filtered == 1 and later.throttled == 0
