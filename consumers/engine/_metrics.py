"""The worker's Prometheus metrics: deliveries by integration and outcome, latency, sizes, answers, in flight.

Cheap on the hot path (a worker makes thousands of deliveries a second per
core): the figures are plain ints and lists kept on the worker's event loop,
and turned into Prometheus families only when scraped (:class:`_Collector`).
prometheus_client's own ``Counter``/``Histogram`` take a lock per increment,
about 1 µs each, five to six per delivery; here one delivery is a few dict
lookups, additions and a ``bisect`` (see the hot-path table of BENCHMARKS.md).
No lock is needed: the deliveries and the scrape (the ``--metrics-port``
server, or ``up``'s gateway) run on the same event loop, and a scrape reads
everything in one synchronous pass.

Label values stay bounded: integration kinds and outcomes are fixed sets, HTTP
statuses are three digits, error kinds are the client's four. Subscription ids
appear only in ``turbohooks_subscription_deliveries_total``, and only while the
worker runs at most ``TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS`` subscriptions.
"""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from typing import Final, Literal

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streams import ProcessMetrics

__all__ = ("DELIVERY_OUTCOMES", "DURATION_BUCKETS", "SIZE_BUCKETS", "DeliveryOutcome", "WorkerMetrics")

DeliveryOutcome = Literal["success", "retry", "failed", "dead", "filtered", "throttled", "loop"]
"""What became of one event for one subscription at one attempt.

``success``: a 2xx. ``retry``: failed, tried again later. ``failed``: failed and
not tried again, nor dead-lettered (410 Gone, a manual retry or a replay, which
get one attempt). ``dead``: failed for good, copied to the dead letters (or a
message that is not an event, refused there). ``filtered``: not sent, the
subscription's rules skipped it. ``throttled``: held back by the subscription's
rate limit. ``loop``: not sent, it was caused by this subscription's own delivery
or its causation chain is too deep (loop prevention).
"""
DELIVERY_OUTCOMES: Final[tuple[DeliveryOutcome, ...]] = (
    "success",
    "retry",
    "failed",
    "dead",
    "filtered",
    "throttled",
    "loop",
)

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a receiver on the same network (5 ms) up to ``WEBHOOK_TIMEOUT``'s default (30 s)."""
SIZE_BUCKETS: Final = (256.0, 1024.0, 4096.0, 16_384.0, 65_536.0, 262_144.0, 1_048_576.0, 4_194_304.0)
"""Bytes: a small notification (256 B) up to a large event (4 MiB)."""

_STATUSES: Final = frozenset(range(100, 600))


class _Histogram:
    """Counts per bucket (the last one: above every bound) and the sum; cumulated when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, so the bucket `le=bound` holds value <= bound.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulated: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            cumulated.append(("+Inf" if bound == math.inf else repr(float(bound)), float(running)))
        return cumulated


class _Kind:
    """The figures of one integration kind."""

    __slots__ = ("duration", "outcomes", "request_bytes", "response_bytes")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.duration = _Histogram(DURATION_BUCKETS)
        self.request_bytes = _Histogram(SIZE_BUCKETS)
        self.response_bytes = _Histogram(SIZE_BUCKETS)


class WorkerMetrics(ProcessMetrics):
    """The worker's metrics, in a registry of their own (one per :class:`~consumers.engine.Worker`).

    Updated on the worker's event loop only (not thread-safe, by design: see the module).
    """

    def __init__(self, *, subscription_labels: int = 1000) -> None:
        super().__init__("worker")
        self.in_flight = 0
        """Requests sent and not yet answered (the deliverer adds and subtracts around each send)."""
        self.subscriptions = 0
        """Subscriptions whose deliveries run in this worker."""
        self.subscription_labels = subscription_labels
        self._kinds: dict[str, _Kind] = {}
        self._responses: dict[tuple[str, int], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._by_subscription: dict[tuple[uuid.UUID, str], int] = {}
        self._per_subscription_on = subscription_labels > 0
        self.registry.register(_Collector(self))

    def _kind(self, integration: str) -> _Kind:
        kind = self._kinds.get(integration)
        if kind is None:
            kind = self._kinds[integration] = _Kind()
        return kind

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
        call it with the outcome (and the subscription) alone.
        """
        kind = self._kinds.get(integration) or self._kind(integration)
        outcomes = kind.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if seconds is not None:
            kind.duration.observe(seconds)
        if request_bytes is not None:
            kind.request_bytes.observe(request_bytes)
        if response_bytes is not None:
            kind.response_bytes.observe(response_bytes)
        if subscription_id is not None and self._per_subscription_on:
            key = (subscription_id, outcome)
            self._by_subscription[key] = self._by_subscription.get(key, 0) + 1

    def answer(self, integration: str, status: int | None, error_kind: str | None) -> None:
        """Count the receiver's answer (its status) or the error that stood in for one."""
        if status is not None:
            key = (integration, status if status in _STATUSES else 0)
            self._responses[key] = self._responses.get(key, 0) + 1
        else:
            error = (integration, error_kind or "unknown")
            self._errors[error] = self._errors.get(error, 0) + 1

    def running(self, subscriptions: int) -> None:
        """The worker runs ``subscriptions`` now: above the bound, per-subscription series are dropped."""
        self.subscriptions = subscriptions
        on = self.subscription_labels > 0 and subscriptions <= self.subscription_labels
        if not on:
            self._by_subscription.clear()
        self._per_subscription_on = on

    def forget_subscription(self, subscription_id: uuid.UUID) -> None:
        """A deleted subscription's series go (its id would otherwise stay in every scrape)."""
        for outcome in DELIVERY_OUTCOMES:
            self._by_subscription.pop((subscription_id, outcome), None)


class _Collector(Collector):
    """The worker's figures as Prometheus families, built at scrape time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        deliveries = CounterMetricFamily(
            "turbohooks_deliveries",
            "Deliveries by integration and outcome: success, retry, failed, dead, filtered, throttled.",
            labels=("integration", "outcome"),
        )
        duration = HistogramMetricFamily(
            "turbohooks_delivery_duration_seconds",
            "Time from the request going out to the receiver's answer (or the error), per attempt.",
            labels=("integration",),
        )
        request_bytes = HistogramMetricFamily(
            "turbohooks_delivery_request_bytes", "Body size of the requests sent to receivers.", labels=("integration",)
        )
        response_bytes = HistogramMetricFamily(
            "turbohooks_delivery_response_bytes",
            "Body size of receivers' answers (Content-Length, else the bytes read, capped).",
            labels=("integration",),
        )
        for integration, kind in sorted(m._kinds.items()):
            for outcome, count in sorted(kind.outcomes.items()):
                deliveries.add_metric((integration, outcome), count)
            for family, histogram in (
                (duration, kind.duration),
                (request_bytes, kind.request_bytes),
                (response_bytes, kind.response_bytes),
            ):
                if any(histogram.counts):
                    family.add_metric((integration,), histogram.buckets(), histogram.total)
        responses = CounterMetricFamily(
            "turbohooks_delivery_responses",
            "Receivers' answers by HTTP status (401/403: authentication refused; 429: throttled; other: not HTTP).",
            labels=("integration", "code"),
        )
        for (integration, code), count in sorted(m._responses.items()):
            responses.add_metric((integration, str(code) if code else "other"), count)
        errors = CounterMetricFamily(
            "turbohooks_delivery_errors",
            "Attempts that got no answer, by kind: timeout, connect, protocol, request.",
            labels=("integration", "kind"),
        )
        for (integration, error), count in sorted(m._errors.items()):
            errors.add_metric((integration, error), count)
        per_subscription = CounterMetricFamily(
            "turbohooks_subscription_deliveries",
            "Deliveries by subscription and outcome (only while the worker runs at most "
            "TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS subscriptions).",
            labels=("subscription_id", "outcome"),
        )
        for (subscription_id, outcome), count in m._by_subscription.items():
            per_subscription.add_metric((str(subscription_id), outcome), count)
        yield deliveries
        yield duration
        yield request_bytes
        yield response_bytes
        yield responses
        yield errors
        yield per_subscription
        yield GaugeMetricFamily("turbohooks_deliveries_in_flight", "Requests sent and not yet answered.", m.in_flight)
        yield GaugeMetricFamily(
            "turbohooks_worker_subscriptions", "Subscriptions whose deliveries run in this worker.", m.subscriptions
        )
