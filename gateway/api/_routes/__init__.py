"""The admin API's routes: one module per area, each with one ``Router`` carrying its path, tags and guard.

Public (no guard): ``health`` (``/health``), ``inbound`` (``/api/inbound/github``,
signed by GitHub) and ``keys`` (``/.well-known/turbohooks/keys``, public keys).
Every other router carries the admin token's guard itself,
so a route added to an area inherits its area's protection.
"""

from __future__ import annotations

from litestar import Router

from . import (
    audit,
    dead_letters,
    deliveries,
    event_types,
    events,
    health,
    inbound,
    keys,
    monitoring,
    stats,
    subscriptions,
)

__all__ = ("ROUTERS",)

ROUTERS: tuple[Router, ...] = (
    health.router,
    inbound.router,
    keys.router,
    monitoring.router,
    event_types.router,
    events.router,
    subscriptions.router,
    deliveries.router,
    dead_letters.router,
    stats.router,
    audit.router,
)
"""Every area's router, in the order the OpenAPI schema lists them."""
