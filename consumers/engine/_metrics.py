"""The worker's Prometheus metrics: deliveries by integration and outcome, latency, sizes, answers, in flight.

Cheap on the hot path (a worker makes thousands of deliveries a second per
core): each ``(integration, outcome)`` pair resolves its label children once
and keeps them, so one delivery is a dict lookup and a few increments, never a
``labels()`` call with its lock and tuple building.

Label values stay bounded: integration kinds and outcomes are fixed sets, HTTP
statuses are three digits, error kinds are the client's four. Subscription ids
appear only in ``turbohooks_subscription_deliveries_total``, and only while the
worker runs at most ``TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS`` subscriptions.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal

from prometheus_client import Counter, Gauge, Histogram

from streams import ProcessMetrics

__all__ = ("DELIVERY_OUTCOMES", "DURATION_BUCKETS", "SIZE_BUCKETS", "DeliveryOutcome", "WorkerMetrics")

DeliveryOutcome = Literal["success", "retry", "failed", "dead", "filtered", "throttled"]
"""What became of one event for one subscription at one attempt.

``success``: a 2xx. ``retry``: failed, tried again later. ``failed``: failed and
not tried again, nor dead-lettered (410 Gone, a manual retry or a replay, which
get one attempt). ``dead``: failed for good, copied to the dead letters (or a
message that is not an event, refused there). ``filtered``: not sent, the
subscription's rules skipped it. ``throttled``: held back by the subscription's
rate limit.
"""
DELIVERY_OUTCOMES: Final[tuple[DeliveryOutcome, ...]] = ("success", "retry", "failed", "dead", "filtered", "throttled")

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a receiver on the same network (5 ms) up to ``WEBHOOK_TIMEOUT``'s default (30 s)."""
SIZE_BUCKETS: Final = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304)
"""Bytes: a small notification (256 B) up to a large event (4 MiB)."""

_STATUSES: Final = frozenset(str(code) for code in range(100, 600))


class _Children:
    """The label children of one ``(integration, outcome)`` pair, resolved once."""

    __slots__ = ("count", "duration", "request_bytes", "response_bytes")

    def __init__(self, metrics: WorkerMetrics, integration: str, outcome: str) -> None:
        self.count = metrics.deliveries.labels(integration, outcome)
        self.duration = metrics.duration.labels(integration)
        self.request_bytes = metrics.request_bytes.labels(integration)
        self.response_bytes = metrics.response_bytes.labels(integration)


class WorkerMetrics(ProcessMetrics):
    """The worker's metrics, in a registry of its own (one per :class:`~consumers.engine.Worker`)."""

    def __init__(self, *, subscription_labels: int = 1000) -> None:
        super().__init__("worker")
        registry = self.registry
        self.deliveries = Counter(
            "turbohooks_deliveries",
            "Deliveries by integration and outcome: success, retry, failed, dead, filtered, throttled.",
            ("integration", "outcome"),
            registry=registry,
        )
        self.duration = Histogram(
            "turbohooks_delivery_duration_seconds",
            "Time from the request going out to the receiver's answer (or the error), per attempt.",
            ("integration",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.request_bytes = Histogram(
            "turbohooks_delivery_request_bytes",
            "Body size of the requests sent to receivers.",
            ("integration",),
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.response_bytes = Histogram(
            "turbohooks_delivery_response_bytes",
            "Body size of receivers' answers (Content-Length, else the bytes read, capped).",
            ("integration",),
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.responses = Counter(
            "turbohooks_delivery_responses",
            "Receivers' answers by HTTP status (401/403: authentication refused; 429: throttled).",
            ("integration", "code"),
            registry=registry,
        )
        self.errors = Counter(
            "turbohooks_delivery_errors",
            "Attempts that got no answer, by kind: timeout, connect, protocol, request.",
            ("integration", "kind"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "turbohooks_deliveries_in_flight", "Requests sent and not yet answered.", registry=registry
        )
        self.subscriptions = Gauge(
            "turbohooks_worker_subscriptions", "Subscriptions whose deliveries run in this worker.", registry=registry
        )
        self.per_subscription = Counter(
            "turbohooks_subscription_deliveries",
            "Deliveries by subscription and outcome (only while the worker runs at most "
            "TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS subscriptions).",
            ("subscription_id", "outcome"),
            registry=registry,
        )
        self.subscription_labels = subscription_labels
        self._per_subscription_on = subscription_labels > 0
        self._children: dict[tuple[str, str], _Children] = {}
        self._answers: dict[tuple[str, int | str], Counter] = {}
        self._by_subscription: dict[tuple[uuid.UUID, str], Counter] = {}

    def delivery(
        self,
        integration: str,
        outcome: DeliveryOutcome,
        *,
        seconds: float | None = None,
        request_bytes: int | None = None,
        response_bytes: int | None = None,
        subscription_id: uuid.UUID | None = None,
    ) -> None:
        """Count one delivery's ``outcome``; with an attempt's ``seconds`` and sizes when a request went out.

        The one call for every outcome: the engine counts success, retry, failed
        and dead; the rules (``filtered``) and the rate limit (``throttled``)
        call it with the outcome alone.
        """
        children = self._children.get((integration, outcome))
        if children is None:
            children = self._children[(integration, outcome)] = _Children(self, integration, outcome)
        children.count.inc()
        if seconds is not None:
            children.duration.observe(seconds)
        if request_bytes is not None:
            children.request_bytes.observe(request_bytes)
        if response_bytes is not None:
            children.response_bytes.observe(response_bytes)
        if subscription_id is not None and self._per_subscription_on:
            child = self._by_subscription.get((subscription_id, outcome))
            if child is None:
                child = self._by_subscription[(subscription_id, outcome)] = self.per_subscription.labels(
                    str(subscription_id), outcome
                )
            child.inc()

    def answer(self, integration: str, status: int | None, error_kind: str | None) -> None:
        """Count the receiver's answer (its status) or the error that stood in for one."""
        key: tuple[str, int | str] = (integration, status if status is not None else f"error:{error_kind}")
        child = self._answers.get(key)
        if child is None:
            if status is not None:
                code = str(status)
                child = self.responses.labels(integration, code if code in _STATUSES else "other")
            else:
                child = self.errors.labels(integration, error_kind or "unknown")
            self._answers[key] = child
        child.inc()

    def running(self, subscriptions: int) -> None:
        """The worker runs ``subscriptions`` now: above the bound, per-subscription series are dropped."""
        self.subscriptions.set(subscriptions)
        on = self.subscription_labels > 0 and subscriptions <= self.subscription_labels
        if self._per_subscription_on and not on:
            self.per_subscription.clear()
            self._by_subscription.clear()
        self._per_subscription_on = on

    def forget_subscription(self, subscription_id: uuid.UUID) -> None:
        """A deleted subscription's series go (its id would otherwise stay in every scrape)."""
        for outcome in DELIVERY_OUTCOMES:
            if self._by_subscription.pop((subscription_id, outcome), None) is not None:
                self.per_subscription.remove(str(subscription_id), outcome)
