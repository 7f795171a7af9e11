"""Prometheus metrics of the gateway: request counters, and figures read at scrape time.

Each app has its own ``CollectorRegistry`` (never the process-global one), so
two apps in one process, or a test suite, never mix their numbers. In
``turbohooks up`` the other roles run in the gateway's process: their metrics
objects are its ``siblings``, and ``/metrics`` renders them all as one
exposition, each sample labelled with its ``process``. The gauges
are not kept up to date between scrapes: each scrape reads the delivery log
and JetStream once, which costs nothing while nobody scrapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError as JsNotFoundError
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from consumers import Engine, Subscription, consumer_name
from streams import ProcessMetrics, TurbohooksError, exposition

from ..operations import read_health
from ._schemas import SubscriptionLag

__all__ = ("GatewayMetrics", "read_lags")

_log = logging.getLogger("turbohooks.gateway")

_LAG_CONCURRENCY: Final = 16
_MAX_SUBSCRIPTIONS: Final = 10_000
_PAGE: Final = 500
_STATUSES: Final = ("pending", "success", "failed")
_SUB_STATUSES: Final = ("active", "paused", "disabled")


async def _all_subscriptions(engine: Engine) -> list[Subscription]:
    subs: list[Subscription] = []
    while len(subs) < _MAX_SUBSCRIPTIONS:
        page = await engine.subscriptions.list(limit=_PAGE, offset=len(subs))
        subs.extend(page)
        if len(page) < _PAGE:
            break
    return subs


async def read_lags(engine: Engine) -> list[SubscriptionLag]:
    """Each subscription's pending and in-flight events, from its JetStream consumer."""
    subs = await _all_subscriptions(engine)
    limit = asyncio.Semaphore(_LAG_CONCURRENCY)

    async def lag(sub: Subscription) -> SubscriptionLag:
        async with limit:
            try:
                info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
            except JsNotFoundError:
                return SubscriptionLag(
                    subscription_id=sub.id, name=sub.name, status=sub.status, pending=None, ack_pending=None
                )
        return SubscriptionLag(
            subscription_id=sub.id,
            name=sub.name,
            status=sub.status,
            pending=info.num_pending or 0,
            ack_pending=info.num_ack_pending or 0,
        )

    return list(await asyncio.gather(*(lag(sub) for sub in subs)))


class GatewayMetrics(ProcessMetrics):
    """The gateway's metrics, in a registry of their own; ``siblings``: the other roles of this process."""

    def __init__(self, *, siblings: Sequence[ProcessMetrics] = (), max_subscriptions: int = 1000) -> None:
        super().__init__("gateway")
        self.siblings = tuple(siblings)
        # Label values are bounded: past this many subscriptions, the rest have no per-subscription gauges.
        self.max_subscriptions = max_subscriptions
        self.requests = Counter(
            "turbohooks_api_requests",
            "Admin API requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "turbohooks_deliveries_last_24h",
            "Deliveries created in the last 24 hours, by current status.",
            ("status",),
            registry=self.registry,
        )
        self.subscriptions = Gauge(
            "turbohooks_subscriptions", "Subscriptions, by status.", ("status",), registry=self.registry
        )
        self.active_subscriptions = Gauge(
            "turbohooks_active_subscriptions", "Subscriptions whose status is active.", registry=self.registry
        )
        self.pending = Gauge(
            "turbohooks_subscription_pending_events",
            "Events not yet delivered to a subscription (its consumer's num_pending).",
            ("subscription_id", "name"),
            registry=self.registry,
        )
        self.ack_pending = Gauge(
            "turbohooks_subscription_in_flight_events",
            "Events in flight or waiting for a retry (its consumer's num_ack_pending).",
            ("subscription_id", "name"),
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "turbohooks_subscription_oldest_pending_seconds",
            "Age of the oldest event a subscription has not acknowledged yet (0 when none waits).",
            ("subscription_id", "name"),
            registry=self.registry,
        )
        self.refresh_ok = Gauge(
            "turbohooks_metrics_refresh_ok",
            "1 when the last scrape could read the delivery log and JetStream, else 0.",
            registry=self.registry,
        )
        # Concurrent scrapes would interleave clear() and set() of the labelled gauges.
        self._lock = asyncio.Lock()

    def count_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request (``route`` is the template, so ids do not explode the labels)."""
        self.requests.labels(method, route, str(status)).inc()

    async def refresh(self, engine: Engine) -> None:
        """Read the figures the gauges show; on failure keep the old ones and set ``refresh_ok`` to 0."""
        async with self._lock:
            try:
                since = datetime.now(UTC) - timedelta(hours=24)
                stats = await engine.deliveries.stats(since)
                counts = {status: await engine.subscriptions.count(status=status) for status in _SUB_STATUSES}
                health = await read_health(engine, limit=self.max_subscriptions, log=False)
            except (NatsError, TimeoutError, OSError, SQLAlchemyError, TurbohooksError) as exc:
                _log.warning("gateway: metrics could not be refreshed: %r", exc)
                self.refresh_ok.set(0)
                return
            for status in _STATUSES:
                self.deliveries.labels(status).set(getattr(stats, status))
            for status, count in counts.items():
                self.subscriptions.labels(status).set(count)
            self.active_subscriptions.set(stats.active_subscriptions)
            # Cleared first: a deleted subscription must not keep its last value forever.
            self.pending.clear()
            self.ack_pending.clear()
            self.oldest_pending.clear()
            for sub in health:
                labels = (str(sub.subscription_id), sub.name)
                if sub.pending is not None:
                    self.pending.labels(*labels).set(sub.pending)
                if sub.in_flight is not None:
                    self.ack_pending.labels(*labels).set(sub.in_flight)
                if sub.oldest_pending_seconds is not None:
                    self.oldest_pending.labels(*labels).set(sub.oldest_pending_seconds)
            self.refresh_ok.set(1)

    def render(self) -> bytes:
        """The gateway's registry and its siblings' in the Prometheus text format."""
        return exposition({part.process: part.registry for part in (self, *self.siblings)})
