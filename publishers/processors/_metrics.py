"""The scheduler's Prometheus metrics: the events the stream processors emitted, by type and processor."""

from __future__ import annotations

from prometheus_client import Counter

from streams import ProcessMetrics

__all__ = ("SchedulerMetrics",)


class SchedulerMetrics(ProcessMetrics):
    """The scheduler role's metrics (the scheduler and the milestone processor share them)."""

    def __init__(self) -> None:
        super().__init__("scheduler")
        # event_type is bounded: the processors emit a fixed set of catalog types.
        self.emitted = Counter(
            "turbohooks_scheduler_events",
            "Events the scheduler (due dates, overdue, starting soon, digests, reports) and the milestone "
            "processor published, by processor and event type.",
            ("processor", "event_type"),
            registry=self.registry,
        )

    def event(self, processor: str, event_type: str) -> None:
        """Count one published event."""
        self.emitted.labels(processor, event_type).inc()
