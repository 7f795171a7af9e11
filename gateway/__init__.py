"""The admin API of turbohooks (Litestar) and the ``turbohooks`` command line.

``create_app(engine, admin_token=...)`` builds the app over an open
:class:`~consumers.Engine`; ``serve_gateway(...)`` runs it under uvicorn until a
stop event is set; ``load_or_create_admin_token(settings)`` finds or makes the
token every route but ``/health`` asks for.
"""

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
