"""Subscriptions: the service (the one door for changes), the KV registry the workers watch,
consumer provisioning, and the subscriptions the environment asks for.

The registry and the consumer provisioning are the worker's (no SQL); the
service and the env bootstrap write SQL and are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import lazy_exports

from ._consumer import (
    ack_wait,
    consumer_config,
    consumer_name,
    delete_consumer,
    ensure_consumer,
    held_limit,
    in_flight_limit,
    max_ack_pending,
)
from ._registry import REGISTRY_BUCKET, RegistryChange, SubscriptionRegistry

if TYPE_CHECKING:
    from ._bootstrap import ENV_SUBSCRIPTIONS, EnvSubscription, ensure_env_subscriptions
    from ._service import SubscriptionService
    from ._shapes import (
        RESERVED_HEADER_PREFIXES,
        SubscriptionCreate,
        SubscriptionPatch,
        SubscriptionView,
        subscription_view,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "ENV_SUBSCRIPTIONS": "._bootstrap",
        "EnvSubscription": "._bootstrap",
        "ensure_env_subscriptions": "._bootstrap",
        "RESERVED_HEADER_PREFIXES": "._shapes",
        "SubscriptionCreate": "._shapes",
        "SubscriptionPatch": "._shapes",
        "SubscriptionService": "._service",
        "SubscriptionView": "._shapes",
        "subscription_view": "._shapes",
    },
)

__all__ = (
    "ENV_SUBSCRIPTIONS",
    "REGISTRY_BUCKET",
    "RESERVED_HEADER_PREFIXES",
    "EnvSubscription",
    "RegistryChange",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionRegistry",
    "SubscriptionService",
    "SubscriptionView",
    "ack_wait",
    "consumer_config",
    "consumer_name",
    "delete_consumer",
    "ensure_consumer",
    "ensure_env_subscriptions",
    "held_limit",
    "in_flight_limit",
    "max_ack_pending",
    "subscription_view",
)
