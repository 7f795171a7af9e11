"""Delivery statistics over a window: totals, rates, latency percentiles, the busiest subscriptions."""

from __future__ import annotations

import builtins
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import (
    case,
    func,
    select,
)

from ._counts import read_skip_counts, skip_counts_by_subscription
from ._database import Database
from ._models import AttemptRow, DeliveryRow, SubscriptionRow
from ._views import (
    DeliveryStats,
    EventTypeActivity,
    SubscriptionActivity,
    SubscriptionWindow,
    utc,
)

__all__ = ("DeliveryStatistics",)


class DeliveryStatistics:
    """The statistics of :class:`~consumers.log.DeliveryStore`."""

    _db: Database

    async def stats(self, since: datetime) -> DeliveryStats:
        """Totals, rates, latency percentiles and the busiest subscriptions and event types since ``since``."""
        in_window = DeliveryRow.created_at >= since
        deliveries = func.count().label("deliveries")
        async with self._db.session() as session:
            by_status: dict[str, int] = {
                status: count
                for status, count in (
                    await session.execute(
                        select(DeliveryRow.status, func.count()).where(in_window).group_by(DeliveryRow.status)
                    )
                )
            }
            # Sorted in SQL, percentiles in Python: fine at this scale, and the same on both databases.
            latencies: builtins.list[float] = [
                latency
                for latency in await session.scalars(
                    select(AttemptRow.latency_ms)
                    .where(AttemptRow.started_at >= since, AttemptRow.latency_ms.is_not(None))
                    .order_by(AttemptRow.latency_ms)
                )
                if latency is not None
            ]
            busiest = await session.execute(
                select(
                    SubscriptionRow.id,
                    SubscriptionRow.name,
                    deliveries,
                    func.sum(case((DeliveryRow.status == "success", 1), else_=0)),
                    func.sum(case((DeliveryRow.status == "failed", 1), else_=0)),
                )
                .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
                .where(in_window)
                .group_by(SubscriptionRow.id, SubscriptionRow.name)
                .order_by(deliveries.desc(), SubscriptionRow.name)
                .limit(10)
            )
            event_types = await session.execute(
                select(DeliveryRow.event_type, deliveries)
                .where(in_window)
                .group_by(DeliveryRow.event_type)
                .order_by(deliveries.desc(), DeliveryRow.event_type)
                .limit(10)
            )
            active = (
                await session.execute(
                    select(func.count()).select_from(SubscriptionRow).where(SubscriptionRow.status == "active")
                )
            ).scalar_one()
            skips = await read_skip_counts(session, since)
            total = sum(by_status.values())
            return DeliveryStats(
                since=utc(since),
                deliveries=total,
                success=by_status.get("success", 0),
                failed=by_status.get("failed", 0),
                pending=by_status.get("pending", 0),
                success_rate=by_status.get("success", 0) / total if total else 0.0,
                failure_rate=by_status.get("failed", 0) / total if total else 0.0,
                latency_p50_ms=_percentile(latencies, 0.50),
                latency_p95_ms=_percentile(latencies, 0.95),
                latency_p99_ms=_percentile(latencies, 0.99),
                most_active_subscriptions=[
                    SubscriptionActivity(
                        subscription_id=sub_id, name=name, deliveries=count, success=int(ok or 0), failed=int(ko or 0)
                    )
                    for sub_id, name, count, ok, ko in busiest
                ],
                top_event_types=[
                    EventTypeActivity(event_type=event_type, deliveries=count) for event_type, count in event_types
                ],
                active_subscriptions=active,
                filtered=skips.overall["filtered"],
                throttled=skips.overall["throttled"],
                loop_stopped=skips.overall["loop"],
                skips_by_subscription=skips.by_subscription,
            )

    async def subscription_windows(self, since: datetime) -> dict[uuid.UUID, SubscriptionWindow]:
        """Per subscription: attempts since ``since``, their success rate, latencies, timeouts, 401/403s, dead ones.

        Subscriptions without an attempt in the window are absent (their figures are the defaults).
        """
        finished = (AttemptRow.started_at >= since, AttemptRow.outcome != "pending")
        counts = (
            select(
                DeliveryRow.subscription_id,
                func.count(),
                func.sum(case((AttemptRow.outcome == "success", 1), else_=0)),
                # The engine's words for a request that ran out of WEBHOOK_TIMEOUT (consumers/engine/_http.py).
                func.sum(case((AttemptRow.error.like("timeout after%"), 1), else_=0)),
                func.sum(case((AttemptRow.response_code.in_((401, 403)), 1), else_=0)),
            )
            .join(DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id)
            .where(*finished)
            .group_by(DeliveryRow.subscription_id)
        )
        latencies = (
            select(DeliveryRow.subscription_id, AttemptRow.latency_ms)
            .join(DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id)
            .where(*finished, AttemptRow.latency_ms.is_not(None))
            .order_by(AttemptRow.latency_ms)
        )
        dead = (
            select(DeliveryRow.subscription_id, func.count())
            .where(DeliveryRow.status == "failed", DeliveryRow.last_attempt_at >= since)
            .group_by(DeliveryRow.subscription_id)
        )
        ordered: defaultdict[uuid.UUID, builtins.list[float]] = defaultdict(builtins.list)
        async with self._db.session() as session:
            rows = builtins.list(await session.execute(counts))
            for sub_id, latency in await session.execute(latencies):
                if latency is not None:
                    ordered[sub_id].append(latency)
            dead_by = {sub_id: count for sub_id, count in await session.execute(dead)}
            skipped = await skip_counts_by_subscription(session, since)
        windows: dict[uuid.UUID, SubscriptionWindow] = {}
        for sub_id, attempts, ok, timeouts, auth in rows:
            values = ordered.get(sub_id, [])
            windows[sub_id] = SubscriptionWindow(
                attempts=attempts,
                success=int(ok or 0),
                success_rate=int(ok or 0) / attempts if attempts else None,
                latency_p50_ms=_percentile(values, 0.50),
                latency_p95_ms=_percentile(values, 0.95),
                latency_p99_ms=_percentile(values, 0.99),
                timeouts=int(timeouts or 0),
                auth_failures=int(auth or 0),
                dead=dead_by.pop(sub_id, 0),
            )
        for sub_id, count in dead_by.items():  # dead without an attempt in the window (recorded late)
            windows[sub_id] = SubscriptionWindow(dead=count)
        for sub_id, figures in skipped.items():  # filtered, throttled, loop: no attempt, only a count
            window = windows.get(sub_id)
            windows[sub_id] = (
                SubscriptionWindow(**figures) if window is None else msgspec.structs.replace(window, **figures)
            )
        return windows

    async def retries_scheduled(self) -> dict[uuid.UUID, int]:
        """Per subscription: deliveries waiting for their next attempt (pending, a next attempt time set)."""
        query = (
            select(DeliveryRow.subscription_id, func.count())
            .where(DeliveryRow.status == "pending", DeliveryRow.next_attempt_at.is_not(None))
            .group_by(DeliveryRow.subscription_id)
        )
        async with self._db.session() as session:
            return {sub_id: count for sub_id, count in await session.execute(query)}


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default)."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
