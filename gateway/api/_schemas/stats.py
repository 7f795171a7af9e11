"""Delivery figures and lag."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from consumers import DeliveryStats

from ...operations import SubscriptionHealth

__all__ = ("StatsView", "SubscriptionLag")


class SubscriptionLag(msgspec.Struct, kw_only=True):
    """How far one subscription's consumer is behind the stream."""

    subscription_id: uuid.UUID
    name: str
    status: str
    pending: int | None
    """Events not yet delivered; ``null`` when its consumer is missing."""
    ack_pending: int | None
    """Events in flight or waiting for a retry."""


class StatsView(msgspec.Struct, kw_only=True):
    """Delivery figures over a window, and each subscription's lag now."""

    window: str
    window_seconds: float
    since: datetime
    deliveries: DeliveryStats
    lag: list[SubscriptionLag]
    health: list[SubscriptionHealth]
    """Each subscription's health now (JetStream and the delivery log), the most troubled first."""
