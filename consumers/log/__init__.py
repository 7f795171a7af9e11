"""The delivery log: the SQL database (SQLAlchemy, Alembic migrations), the stores and the recorder.

Loaded only by processes that touch the database (the gateway, the recorder,
the CLI); a worker never imports this package.

* :class:`Database`: the engine, migrations applied on enter (``_migrations/``).
* :class:`SubscriptionStore`: the subscriptions, the source of truth of the KV mirror.
* :class:`DeliveryStore`: deliveries and attempts: batch recording (``_recording``),
  log queries (``_queries``), stats (``_stats``); read models in ``_views``.
* :class:`AuditStore`: the audit log of admin actions (``_audit``).
* :class:`Recorder`: writes the attempts stream into the store; its :class:`Prober`
  probes the disabled subscriptions and re-enables those whose receiver is back.
"""

from __future__ import annotations

from ._audit import AuditEntry, AuditStore, acting_as, current_actor, local_actor
from ._database import MIGRATIONS_DIR, Database, alembic_config
from ._metrics import RecorderMetrics
from ._prober import Prober
from ._recorder import PARKED_SUBJECT, RECORDER_CONSUMER, Recorder
from ._store import (
    AttemptDetail,
    DeliveryDetail,
    DeliveryStats,
    DeliveryStore,
    DeliverySummary,
    EventTypeActivity,
    RecordResult,
    SubscriptionActivity,
    SubscriptionSkips,
    SubscriptionStore,
    SubscriptionWindow,
)

__all__ = (
    "MIGRATIONS_DIR",
    "PARKED_SUBJECT",
    "RECORDER_CONSUMER",
    "AttemptDetail",
    "AuditEntry",
    "AuditStore",
    "Database",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliveryStore",
    "DeliverySummary",
    "EventTypeActivity",
    "Prober",
    "RecordResult",
    "Recorder",
    "RecorderMetrics",
    "SubscriptionActivity",
    "SubscriptionSkips",
    "SubscriptionStore",
    "SubscriptionWindow",
    "acting_as",
    "alembic_config",
    "current_actor",
    "local_actor",
)
