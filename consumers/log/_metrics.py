"""The recorder's Prometheus metrics: attempts recorded, batch sizes, write latency, write errors, parked messages."""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import Counter, Histogram

from streams import ProcessMetrics

__all__ = ("RecorderMetrics",)

_BATCH_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
"""Attempt records per write: one at a time when idle, a full fetch of batches under load."""
_WRITE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: an SQLite commit (1 ms) up to a stalled PostgreSQL (5 s)."""


class RecorderMetrics(ProcessMetrics):
    """The recorder's metrics, in a registry of their own (one per :class:`~consumers.log.Recorder`)."""

    def __init__(self) -> None:
        super().__init__("recorder")
        registry = self.registry
        self.attempts = Counter(
            "turbohooks_recorder_attempts",
            "Attempt records written to the delivery log.",
            registry=registry,
        )
        self.batch = Histogram(
            "turbohooks_recorder_batch_attempts",
            "Attempt records per write to the delivery log.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.write_seconds = Histogram(
            "turbohooks_recorder_write_duration_seconds",
            "Time one write of the delivery log takes (records, deliveries, failure counts; one transaction).",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        self.write_errors = Counter(
            "turbohooks_recorder_write_errors",
            "Writes of the delivery log that failed: transient (database or NATS away; retried) or refused "
            "(the database rejected the batch; isolated, then parked).",
            ("kind",),
            registry=registry,
        )
        self.parked = Counter(
            "turbohooks_recorder_parked_messages",
            "Attempts messages set aside on the dead-letter stream (undecodable, or refused by the database).",
            registry=registry,
        )
        self._transient = self.write_errors.labels("transient")
        self._refused = self.write_errors.labels("refused")

    def written(self, attempts: int, seconds: float) -> None:
        """One write of ``attempts`` records took ``seconds``."""
        self.attempts.inc(attempts)
        self.batch.observe(attempts)
        self.write_seconds.observe(seconds)

    def write_failed(self, kind: Literal["transient", "refused"]) -> None:
        """One write failed."""
        (self._transient if kind == "transient" else self._refused).inc()
