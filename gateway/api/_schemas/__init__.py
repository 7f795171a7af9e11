"""Every request and response body of the admin API, as msgspec Structs, one module per area.

Request bodies refuse fields they do not know (``forbid_unknown_fields``), so a
typo is an error naming the field rather than a silently ignored setting.
Responses reuse the engine's own Structs where they are the contract already
(``SubscriptionView``, ``DeliverySummary``, ``AttemptDetail``, ``DeliveryStats``,
``Event``) and the operations' results (replay, recover, test-send).
"""

from __future__ import annotations

from .dead_letters import (
    AttemptSummary,
    DeadLetterPage,
    DeadLetterRedriven,
    DeadLetterView,
    RedriveRefusal,
    SubscriptionRedrive,
)
from .deliveries import DeliveryDetailView, DeliveryPage, RetryQueued
from .events import (
    ActorBody,
    ActorView,
    EventDataView,
    EventEnvelope,
    EventPage,
    EventSource,
    EventTypeList,
    EventTypeView,
    PublishedEvent,
    PublishEventBody,
    StoredEvent,
)
from .health import HealthStatus, ReadyCheck, ReadyStatus
from .problems import FieldProblem, Problem
from .stats import StatsView, SubscriptionLag
from .subscriptions import (
    DeliveryTestResult,
    PreviewBody,
    PreviewItem,
    PreviewResult,
    RecoverResult,
    ReplayBody,
    ReplayItem,
    ReplayResult,
    SubscriptionCreateBody,
    SubscriptionPage,
    SubscriptionUpdateBody,
)

__all__ = (
    "ActorBody",
    "ActorView",
    "AttemptSummary",
    "DeadLetterPage",
    "DeadLetterRedriven",
    "DeadLetterView",
    "DeliveryDetailView",
    "DeliveryPage",
    "DeliveryTestResult",
    "EventDataView",
    "EventEnvelope",
    "EventPage",
    "EventSource",
    "EventTypeList",
    "EventTypeView",
    "FieldProblem",
    "HealthStatus",
    "PreviewBody",
    "PreviewItem",
    "PreviewResult",
    "Problem",
    "PublishEventBody",
    "PublishedEvent",
    "ReadyCheck",
    "ReadyStatus",
    "RecoverResult",
    "RedriveRefusal",
    "ReplayBody",
    "ReplayItem",
    "ReplayResult",
    "RetryQueued",
    "StatsView",
    "StoredEvent",
    "SubscriptionCreateBody",
    "SubscriptionLag",
    "SubscriptionPage",
    "SubscriptionRedrive",
    "SubscriptionUpdateBody",
)
