"""The admin API of turbohooks (Litestar) and the ``turbohooks`` command line.

``create_app(engine, admin_token=...)`` builds the app over an open
:class:`~consumers.Engine`; ``serve_gateway(...)`` runs it under uvicorn until a
stop event is set; ``load_or_create_admin_token(settings)`` finds or makes the
token every route but ``/health`` asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import lazy_exports

if TYPE_CHECKING:
    from ._app import MAX_BODY_SIZE, create_app, serve_gateway
    from ._auth import ADMIN_TOKEN_FILE, ADMIN_TOKEN_VARIABLE, load_or_create_admin_token
    from ._metrics import GatewayMetrics
    from ._problems import PROBLEM_MEDIA_TYPE
    from ._routes.deliveries import MAX_RECOVER
    from ._routes.events import MAX_EVENT_ID_SCAN, MAX_EVENT_SCAN
    from ._routes.replay import MAX_REPLAY_EVENTS, ReplayRange, replay_subscription
    from ._schemas import (
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

# Loaded on first use: importing the command line (``gateway.cli``) must not
# load Litestar and every route, which a worker process never needs.
_LAZY: dict[str, str] = {
    "ADMIN_TOKEN_FILE": "._auth",
    "ADMIN_TOKEN_VARIABLE": "._auth",
    "DeliveryDetailView": "._schemas",
    "DeliveryPage": "._schemas",
    "DeliveryTestResult": "._schemas",
    "EventPage": "._schemas",
    "FieldProblem": "._schemas",
    "GatewayMetrics": "._metrics",
    "MAX_BODY_SIZE": "._app",
    "MAX_EVENT_ID_SCAN": "._routes.events",
    "MAX_EVENT_SCAN": "._routes.events",
    "MAX_RECOVER": "._routes.deliveries",
    "MAX_REPLAY_EVENTS": "._routes.replay",
    "PROBLEM_MEDIA_TYPE": "._problems",
    "Problem": "._schemas",
    "PublishEventBody": "._schemas",
    "PublishedEvent": "._schemas",
    "ReplayBody": "._schemas",
    "ReplayRange": "._routes.replay",
    "ReplayResult": "._schemas",
    "StatsView": "._schemas",
    "StoredEvent": "._schemas",
    "SubscriptionCreateBody": "._schemas",
    "SubscriptionPage": "._schemas",
    "SubscriptionUpdateBody": "._schemas",
    "create_app": "._app",
    "load_or_create_admin_token": "._auth",
    "replay_subscription": "._routes.replay",
    "serve_gateway": "._app",
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
