"""What the UI reads from the delivery log that the store's queries do not give.

The headline figures are the store's own (``engine.deliveries.stats``, the same
call as ``GET /api/stats``); these add what the pages draw: each
subscription's figures in the subscriptions table, figures over time, failures
by status code and error kind, and deliveries of given events (the log's
entity filter). The definitions are the store's: deliveries counted by their
creation time, latencies by attempt start, percentiles interpolated linearly.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import defer

from consumers import DeliverySummary, Engine
from consumers.log._models import AttemptRow, DeliveryRow
from consumers.log._views import summary_values

__all__ = (
    "Series",
    "SubscriptionFigures",
    "deliveries_of_events",
    "percentile",
    "series",
    "subscription_figures",
)

_MAX_ROWS: Final = 200_000
"""Rows one analytics read takes at most (the newest); a busier window is drawn from its newest part."""
_BUCKETS: Final = 48


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated linearly (as the store's stats)."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(slots=True)
class SubscriptionFigures:
    """One subscription's deliveries in a window, and its last delivery ever."""

    deliveries: int = 0
    success: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    last_delivery_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        return self.success / self.deliveries if self.deliveries else None

    @property
    def p95_ms(self) -> float | None:
        return percentile(sorted(self.latencies), 0.95)


async def subscription_figures(engine: Engine, since: datetime) -> dict[uuid.UUID, SubscriptionFigures]:
    """Each subscription's deliveries and latencies since ``since``, and its latest attempt's time."""
    figures: dict[uuid.UUID, SubscriptionFigures] = {}
    async with engine.db.session() as session:
        counts = await session.execute(
            select(DeliveryRow.subscription_id, DeliveryRow.status, func.count())
            .where(DeliveryRow.created_at >= since)
            .group_by(DeliveryRow.subscription_id, DeliveryRow.status)
        )
        for sub_id, status, count in counts:
            fig = figures.setdefault(sub_id, SubscriptionFigures())
            fig.deliveries += count
            if status == "success":
                fig.success += count
            elif status == "failed":
                fig.failed += count
        latencies = await session.execute(
            select(DeliveryRow.subscription_id, AttemptRow.latency_ms)
            .join(DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id)
            .where(AttemptRow.started_at >= since, AttemptRow.latency_ms.is_not(None))
            .limit(_MAX_ROWS)
        )
        for sub_id, latency in latencies:
            if latency is not None:
                figures.setdefault(sub_id, SubscriptionFigures()).latencies.append(float(latency))
        last = await session.execute(
            select(DeliveryRow.subscription_id, func.max(DeliveryRow.last_attempt_at)).group_by(
                DeliveryRow.subscription_id
            )
        )
        for sub_id, at in last:
            figures.setdefault(sub_id, SubscriptionFigures()).last_delivery_at = at
    return figures


async def deliveries_of_events(
    engine: Engine, event_ids: Sequence[uuid.UUID], *, subscription_id: uuid.UUID | None = None, limit: int = 200
) -> list[DeliverySummary]:
    """The deliveries of these events, newest first (the log's entity filter, and an event's page)."""
    if not event_ids:
        return []
    query = (
        select(DeliveryRow)
        .options(defer(DeliveryRow.payload), defer(DeliveryRow.response_body))
        .where(DeliveryRow.event_id.in_(list(event_ids)[:1000]))
        .order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
        .limit(limit)
    )
    if subscription_id is not None:
        query = query.where(DeliveryRow.subscription_id == subscription_id)
    async with engine.db.session() as session:
        return [DeliverySummary(**summary_values(row)) for row in await session.scalars(query)]


@dataclass(slots=True)
class Series:
    """Figures over a window, in equal buckets, for the analytics charts."""

    labels: list[str] = field(default_factory=list)
    """Each bucket's start (ISO 8601, UTC)."""
    success: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    deliveries: int = 0
    success_total: int = 0
    failed_total: int = 0
    pending_total: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    by_status_code: list[tuple[str, int]] = field(default_factory=list)
    """Failed attempts by the receiver's answer (``no answer`` when there was none)."""
    by_error_kind: list[tuple[str, int]] = field(default_factory=list)
    """Failed attempts by the kind of their error."""
    event_types: list[tuple[str, int]] = field(default_factory=list)
    """Deliveries by event type, most first."""


def error_kind(code: int | None, error: str | None) -> str:
    """A short kind for a failed attempt: its HTTP class, or the first words of its error."""
    if code is not None:
        return f"HTTP {code // 100}xx"
    if not error:
        return "unknown"
    head = error.split(":", 1)[0].strip().lower()
    return head[:40] or "unknown"


async def series(
    engine: Engine, since: datetime, until: datetime, *, subscription_id: uuid.UUID | None = None
) -> Series:
    """Deliveries and attempt latencies from ``since`` to ``until``, bucketed; optionally one subscription's."""
    span = max((until - since).total_seconds(), 1.0)
    width = span / _BUCKETS
    out = Series(labels=[(since + timedelta(seconds=width * i)).isoformat() for i in range(_BUCKETS)])
    out.success, out.failed, out.pending = [0] * _BUCKETS, [0] * _BUCKETS, [0] * _BUCKETS
    buckets: list[list[float]] = [[] for _ in range(_BUCKETS)]

    def bucket(at: datetime) -> int:
        return min(max(int((at - since).total_seconds() // width), 0), _BUCKETS - 1)

    deliveries = select(DeliveryRow.created_at, DeliveryRow.status, DeliveryRow.event_type).where(
        DeliveryRow.created_at >= since
    )
    attempts = (
        select(
            AttemptRow.started_at, AttemptRow.latency_ms, AttemptRow.outcome, AttemptRow.response_code, AttemptRow.error
        )
        .join(DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id)
        .where(AttemptRow.started_at >= since)
    )
    if subscription_id is not None:
        deliveries = deliveries.where(DeliveryRow.subscription_id == subscription_id)
        attempts = attempts.where(DeliveryRow.subscription_id == subscription_id)
    types: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    async with engine.db.session() as session:
        for created, status, event_type in await session.execute(
            deliveries.order_by(DeliveryRow.created_at.desc()).limit(_MAX_ROWS)
        ):
            index = bucket(created)
            target = out.success if status == "success" else out.failed if status == "failed" else out.pending
            target[index] += 1
            types[event_type] += 1
        for started, latency, outcome, code, error in await session.execute(
            attempts.order_by(AttemptRow.started_at.desc()).limit(_MAX_ROWS)
        ):
            if latency is not None:
                buckets[bucket(started)].append(float(latency))
                latencies.append(float(latency))
            if outcome != "success":
                codes["no answer" if code is None else str(code)] += 1
                kinds[error_kind(code, error)] += 1
    for values in buckets:
        values.sort()
        out.p50.append(_round(percentile(values, 0.50)))
        out.p95.append(_round(percentile(values, 0.95)))
        out.p99.append(_round(percentile(values, 0.99)))
    latencies.sort()
    out.latency_p50, out.latency_p95, out.latency_p99 = (percentile(latencies, q) for q in (0.50, 0.95, 0.99))
    out.success_total, out.failed_total, out.pending_total = sum(out.success), sum(out.failed), sum(out.pending)
    out.deliveries = out.success_total + out.failed_total + out.pending_total
    out.by_status_code = codes.most_common(10)
    out.by_error_kind = kinds.most_common(10)
    out.event_types = types.most_common(20)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
