"""The delivery engine: subscriptions as durable consumers, signed HTTP delivery, retries, the delivery log."""

from ._batcher import AttemptBatcher
from ._consumer import consumer_config, consumer_name, delete_consumer, ensure_consumer
from ._database import Database
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
from ._recorder import RECORDER_CONSUMER, Recorder
from ._redelivery import event_envelope, queue_redelivery, retry_delivery
from ._registry import REGISTRY_BUCKET, RegistryChange, SubscriptionRegistry
from ._retry import RetryPolicy, classify, parse_retry_after
from ._runtime import Engine, open_engine
from ._service import (
    SubscriptionCreate,
    SubscriptionPatch,
    SubscriptionService,
    SubscriptionView,
    subscription_view,
)
from ._signing import SignatureError, build_headers, generate_secret, github_signature, sign, verify
from ._store import (
    AttemptDetail,
    DeliveryDetail,
    DeliveryStats,
    DeliveryStore,
    DeliverySummary,
    RecordResult,
    SubscriptionStore,
)
from ._urls import validate_destination
from ._worker import USER_AGENT, RedeliveryRequest, Worker, redeliver_subject

__all__ = (
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
    "delivery_id_for",
    "ensure_consumer",
    "event_envelope",
    "generate_secret",
    "github_signature",
    "open_engine",
    "parse_retry_after",
    "queue_redelivery",
    "redeliver_subject",
    "retry_delivery",
    "sign",
    "subscription_view",
    "validate_destination",
    "verify",
)
