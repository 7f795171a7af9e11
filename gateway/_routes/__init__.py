"""The admin API's routes, one module per area."""

from __future__ import annotations

from typing import Final

from litestar.handlers import HTTPRouteHandler

from .deliveries import get_delivery, list_deliveries, recover_subscription, retry_delivery
from .event_types import list_event_types
from .events import get_event, list_events, publish_event
from .health import health, ready
from .inbound import inbound_github
from .metrics import metrics
from .replay import replay_events
from .stats import get_stats
from .subscriptions import (
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    rotate_secret,
    send_test_event,
    update_subscription,
)

__all__ = ("PROTECTED_ROUTES", "PUBLIC_ROUTES")

PUBLIC_ROUTES: Final[tuple[HTTPRouteHandler, ...]] = (health, inbound_github)
PROTECTED_ROUTES: Final[tuple[HTTPRouteHandler, ...]] = (
    ready,
    metrics,
    list_event_types,
    publish_event,
    list_events,
    get_event,
    create_subscription,
    list_subscriptions,
    get_subscription,
    update_subscription,
    delete_subscription,
    rotate_secret,
    send_test_event,
    recover_subscription,
    replay_events,
    list_deliveries,
    get_delivery,
    retry_delivery,
    get_stats,
)
