"""Reading and writing subscriptions and deliveries in SQL.

:class:`SubscriptionStore` holds the subscriptions (the source of truth the
workers' KV mirror is built from). :class:`DeliveryStore` is written by the
recorder, in batches of :class:`~consumers._messages.AttemptRecord`, and read by
the gateway (delivery log, retry, recover, stats). Both work on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from ._queries import DeliveryQueries
from ._recording import DeliveryRecording
from ._stats import DeliveryStatistics
from ._subscriptions import SubscriptionStore
from ._views import (
    AttemptDetail,
    DeliveryDetail,
    DeliveryStats,
    DeliverySummary,
    EventTypeActivity,
    RecordResult,
    SubscriptionActivity,
    SubscriptionSkips,
    SubscriptionWindow,
)

__all__ = (
    "AttemptDetail",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliveryStore",
    "DeliverySummary",
    "EventTypeActivity",
    "RecordResult",
    "SubscriptionActivity",
    "SubscriptionSkips",
    "SubscriptionStore",
    "SubscriptionWindow",
)


class DeliveryStore(DeliveryRecording, DeliveryQueries, DeliveryStatistics):
    """Deliveries and their attempts in SQL: written by the recorder (:meth:`record`), read by the gateway."""
