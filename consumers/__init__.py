"""The delivery engine and the control plane's data, in three rooms.

* :mod:`consumers.engine`: the worker, continuous pull, batcher, HTTP client,
  retry classification, the outcome union, the redelivery request.
* :mod:`consumers.log`: the database, models, migrations, stores and the recorder (SQL).
* :mod:`consumers.subscriptions`: the service, the KV registry, consumer
  provisioning, the subscriptions the environment asks for.

``_messages`` holds the wire Structs the rooms share; ``_runtime`` opens an
:class:`Engine`. The names below are the package's public API; the SQL side is
loaded on first use (a worker process never touches the database).
Signing is :mod:`integrations.core`'s, re-exported here for receivers
(``from consumers import verify, SignatureError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrations.core import (
    SignatureError,
    build_headers,
    generate_secret,
    github_signature,
    parse_retry_after,
    sign,
    validate_destination,
    verify,
)
from streams import USER_AGENT, lazy_exports

from ._messages import (
    AttemptBatch,
    AttemptOutcome,
    AttemptRecord,
    AttemptTrigger,
    CountedSkip,
    DeadLetter,
    DeliveryStatus,
    Ordering,
    RateLimit,
    SignatureScheme,
    SkipCount,
    Subscription,
    SubscriptionStatus,
    delivery_id_for,
)
from .engine import (
    EVENT_SOURCE,
    AttemptBatcher,
    DeliveryClient,
    HttpResult,
    RedeliveryRequest,
    RetryPolicy,
    Worker,
    WorkerMetrics,
    classify,
    client_tls,
    delivery_headers,
    redeliver_subject,
)
from .subscriptions import (
    REGISTRY_BUCKET,
    RegistryChange,
    SubscriptionRegistry,
    consumer_config,
    consumer_name,
    delete_consumer,
    ensure_consumer,
)

if TYPE_CHECKING:
    from ._runtime import Engine, open_engine
    from .log import (
        RECORDER_CONSUMER,
        AttemptDetail,
        AuditEntry,
        AuditStore,
        Database,
        DeliveryDetail,
        DeliveryStats,
        DeliveryStore,
        DeliverySummary,
        Prober,
        Recorder,
        RecorderMetrics,
        RecordResult,
        SubscriptionStore,
        acting_as,
        current_actor,
    )
    from .subscriptions import (
        ENV_SUBSCRIPTIONS,
        EnvSubscription,
        SubscriptionCreate,
        SubscriptionPatch,
        SubscriptionService,
        SubscriptionView,
        ensure_env_subscriptions,
        subscription_view,
    )

# The SQL side (SQLAlchemy, Alembic) is loaded on first use: a worker process
# never touches the database, and those imports were half of its memory.
_LAZY: dict[str, str] = {
    "AttemptDetail": ".log",
    "AuditEntry": ".log",
    "AuditStore": ".log",
    "acting_as": ".log",
    "current_actor": ".log",
    "Database": ".log",
    "DeliveryDetail": ".log",
    "DeliveryStats": ".log",
    "DeliveryStore": ".log",
    "DeliverySummary": ".log",
    "ENV_SUBSCRIPTIONS": ".subscriptions",
    "Engine": "._runtime",
    "EnvSubscription": ".subscriptions",
    "RECORDER_CONSUMER": ".log",
    "Prober": ".log",
    "RecordResult": ".log",
    "Recorder": ".log",
    "RecorderMetrics": ".log",
    "SubscriptionCreate": ".subscriptions",
    "SubscriptionPatch": ".subscriptions",
    "SubscriptionService": ".subscriptions",
    "SubscriptionStore": ".log",
    "SubscriptionView": ".subscriptions",
    "ensure_env_subscriptions": ".subscriptions",
    "open_engine": "._runtime",
    "subscription_view": ".subscriptions",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "ENV_SUBSCRIPTIONS",
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
    "AuditEntry",
    "AuditStore",
    "CountedSkip",
    "Database",
    "DeadLetter",
    "DeliveryClient",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliveryStatus",
    "DeliveryStore",
    "DeliverySummary",
    "Engine",
    "EnvSubscription",
    "HttpResult",
    "Ordering",
    "Prober",
    "RateLimit",
    "RecordResult",
    "Recorder",
    "RecorderMetrics",
    "RedeliveryRequest",
    "RegistryChange",
    "RetryPolicy",
    "SignatureError",
    "SignatureScheme",
    "SkipCount",
    "Subscription",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionRegistry",
    "SubscriptionService",
    "SubscriptionStatus",
    "SubscriptionStore",
    "SubscriptionView",
    "Worker",
    "WorkerMetrics",
    "acting_as",
    "build_headers",
    "classify",
    "client_tls",
    "consumer_config",
    "consumer_name",
    "current_actor",
    "delete_consumer",
    "delivery_headers",
    "delivery_id_for",
    "ensure_consumer",
    "ensure_env_subscriptions",
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
