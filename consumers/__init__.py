"""The delivery engine: subscriptions as durable consumers, signed HTTP delivery, retries, the delivery log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import lazy_exports

from ._batcher import AttemptBatcher
from ._consumer import consumer_config, consumer_name, delete_consumer, ensure_consumer
from ._http import DeliveryClient, HttpResult
from ._messages import (
    AttemptBatch,
    AttemptOutcome,
    AttemptRecord,
    AttemptTrigger,
    DeadLetter,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    delivery_id_for,
)
from ._registry import REGISTRY_BUCKET, RegistryChange, SubscriptionRegistry
from ._retry import RetryPolicy, classify, parse_retry_after
from ._signing import SignatureError, build_headers, generate_secret, github_signature, sign, verify
from ._urls import validate_destination
from ._worker import EVENT_SOURCE, USER_AGENT, RedeliveryRequest, Worker, delivery_headers, redeliver_subject

if TYPE_CHECKING:
    from ._database import Database
    from ._recorder import RECORDER_CONSUMER, Recorder
    from ._runtime import Engine, open_engine
    from ._service import (
        SubscriptionCreate,
        SubscriptionPatch,
        SubscriptionService,
        SubscriptionView,
        subscription_view,
    )
    from ._store import (
        AttemptDetail,
        DeliveryDetail,
        DeliveryStats,
        DeliveryStore,
        DeliverySummary,
        RecordResult,
        SubscriptionStore,
    )

# The SQL side (SQLAlchemy, Alembic) is loaded on first use: a worker process
# never touches the database, and those imports were half of its memory.
_LAZY: dict[str, str] = {
    "AttemptDetail": "._store",
    "Database": "._database",
    "DeliveryDetail": "._store",
    "DeliveryStats": "._store",
    "DeliveryStore": "._store",
    "DeliverySummary": "._store",
    "Engine": "._runtime",
    "RECORDER_CONSUMER": "._recorder",
    "RecordResult": "._store",
    "Recorder": "._recorder",
    "SubscriptionCreate": "._service",
    "SubscriptionPatch": "._service",
    "SubscriptionService": "._service",
    "SubscriptionStore": "._store",
    "SubscriptionView": "._service",
    "open_engine": "._runtime",
    "subscription_view": "._service",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "EVENT_SOURCE",
    "RECORDER_CONSUMER",
    "REGISTRY_BUCKET",
    "USER_AGENT",
    "AttemptBatch",
    "AttemptBatcher",
    "AttemptDetail",
    "AttemptOutcome",
    "AttemptRecord",
    "AttemptTrigger",
    "Database",
    "DeadLetter",
    "DeliveryClient",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliveryStatus",
    "DeliveryStore",
    "DeliverySummary",
    "Engine",
    "HttpResult",
    "RecordResult",
    "Recorder",
    "RedeliveryRequest",
    "RegistryChange",
    "RetryPolicy",
    "SignatureError",
    "Subscription",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionRegistry",
    "SubscriptionService",
    "SubscriptionStatus",
    "SubscriptionStore",
    "SubscriptionView",
    "Worker",
    "build_headers",
    "classify",
    "consumer_config",
    "consumer_name",
    "delete_consumer",
    "delivery_headers",
    "delivery_id_for",
    "ensure_consumer",
    "generate_secret",
    "github_signature",
    "open_engine",
    "parse_retry_after",
    "redeliver_subject",
    "sign",
    "subscription_view",
    "validate_destination",
    "verify",
)
