"""The gateway of turbohooks: the admin API, the operations it shares with the CLI, and the CLI.

    gateway/api/         the Litestar app: one Router per area carrying its guard, problems, schemas, metrics
    gateway/operations/  retry, recover, replay, test-send (and their one "not active" rule)
    gateway/cli/         the ``turbohooks`` command and the composition root of every process

``create_app(engine, admin_token=...)`` builds the app over an open
:class:`~consumers.Engine`; ``serve_gateway(...)`` runs it under uvicorn until a
stop event is set; ``load_or_create_admin_token(settings)`` finds or makes the
token every route but ``/health`` asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import lazy_exports

if TYPE_CHECKING:
    from ._token import ADMIN_TOKEN_FILE, ADMIN_TOKEN_VARIABLE, load_or_create_admin_token
    from .api import (
        MAX_BODY_SIZE,
        MAX_EVENT_ID_SCAN,
        MAX_EVENT_SCAN,
        PROBLEM_MEDIA_TYPE,
        GatewayMetrics,
        create_app,
        serve_gateway,
    )
    from .api._schemas import (
        DeliveryDetailView,
        DeliveryPage,
        DeliveryTestResult,
        EventPage,
        FieldProblem,
        Problem,
        PublishedEvent,
        PublishEventBody,
        ReplayBody,
        ReplayResult,
        StatsView,
        StoredEvent,
        SubscriptionCreateBody,
        SubscriptionPage,
        SubscriptionUpdateBody,
    )
    from .operations import MAX_RECOVER, MAX_REPLAY_EVENTS, ReplayRange, replay_subscription

# Loaded on first use: importing the command line (``gateway.cli``) must not
# load Litestar and every route, which a worker process never needs.
_LAZY: dict[str, str] = {
    "ADMIN_TOKEN_FILE": "._token",
    "ADMIN_TOKEN_VARIABLE": "._token",
    "DeliveryDetailView": ".api._schemas",
    "DeliveryPage": ".api._schemas",
    "DeliveryTestResult": ".operations",
    "EventPage": ".api._schemas",
    "FieldProblem": ".api._schemas",
    "GatewayMetrics": ".api",
    "MAX_BODY_SIZE": ".api",
    "MAX_EVENT_ID_SCAN": ".api",
    "MAX_EVENT_SCAN": ".api",
    "MAX_RECOVER": ".operations",
    "MAX_REPLAY_EVENTS": ".operations",
    "PROBLEM_MEDIA_TYPE": ".api",
    "Problem": ".api._schemas",
    "PublishEventBody": ".api._schemas",
    "PublishedEvent": ".api._schemas",
    "ReplayBody": ".api._schemas",
    "ReplayRange": ".operations",
    "ReplayResult": ".operations",
    "StatsView": ".api._schemas",
    "StoredEvent": ".api._schemas",
    "SubscriptionCreateBody": ".api._schemas",
    "SubscriptionPage": ".api._schemas",
    "SubscriptionUpdateBody": ".api._schemas",
    "create_app": ".api",
    "load_or_create_admin_token": "._token",
    "replay_subscription": ".operations",
    "serve_gateway": ".api",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "ADMIN_TOKEN_FILE",
    "ADMIN_TOKEN_VARIABLE",
    "MAX_BODY_SIZE",
    "MAX_EVENT_ID_SCAN",
    "MAX_EVENT_SCAN",
    "MAX_RECOVER",
    "MAX_REPLAY_EVENTS",
    "PROBLEM_MEDIA_TYPE",
    "DeliveryDetailView",
    "DeliveryPage",
    "DeliveryTestResult",
    "EventPage",
    "FieldProblem",
    "GatewayMetrics",
    "Problem",
    "PublishEventBody",
    "PublishedEvent",
    "ReplayBody",
    "ReplayRange",
    "ReplayResult",
    "StatsView",
    "StoredEvent",
    "SubscriptionCreateBody",
    "SubscriptionPage",
    "SubscriptionUpdateBody",
    "create_app",
    "load_or_create_admin_token",
    "replay_subscription",
    "serve_gateway",
)
