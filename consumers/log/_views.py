"""The delivery log's read models, and the row -> model helpers the store modules share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final, cast

import msgspec
from sqlalchemy import (
    Table,
)

from .._messages import (
    AttemptOutcome,
    AttemptTrigger,
    DeliveryStatus,
)
from ._models import AttemptRow, DeliveryRow, SkipCountRow, SubscriptionRow

__all__ = (
    "ATTEMPTS",
    "DELIVERIES",
    "SKIP_COUNTS",
    "SUBSCRIPTIONS",
    "AttemptDetail",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliverySummary",
    "EventTypeActivity",
    "RecordResult",
    "SubscriptionActivity",
    "SubscriptionSkips",
    "attempt_detail",
    "now",
    "payload_bytes",
    "summary_values",
    "utc",
)


class DeliverySummary(msgspec.Struct, kw_only=True):
    """One delivery (an event to a subscription) as listed in the delivery log."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    """``success`` once any attempt succeeded; else ``pending`` while retries remain, then ``failed``."""
    trigger: AttemptTrigger
    """Of the latest attempt."""
    attempts: int
    """Attempts recorded for it, of every trigger."""
    response_code: int | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    """Of the latest attempt."""
    stream_seq: int | None = None
    created_at: datetime
    """When its first attempt started."""
    delivered_at: datetime | None = None
    last_attempt_at: datetime | None = None
    """When the latest attempt finished."""
    next_attempt_at: datetime | None = None


class AttemptDetail(msgspec.Struct, kw_only=True):
    """One HTTP attempt of a delivery, as recorded."""

    attempt_id: uuid.UUID
    delivery_id: uuid.UUID
    attempt: int
    outcome: AttemptOutcome
    trigger: AttemptTrigger
    request_url: str
    request_headers: dict[str, str]
    response_code: int | None = None
    response_headers: dict[str, str]
    response_body: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    started_at: datetime
    finished_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryDetail(DeliverySummary, kw_only=True):
    """A delivery with its latest answer, the body sent, and every attempt (oldest first)."""

    response_body: str | None = None
    payload: bytes = b""
    """The request body of the latest attempt that carried one (JSON, re-encoded)."""
    attempt_log: list[AttemptDetail] = msgspec.field(default_factory=list)


class SubscriptionActivity(msgspec.Struct, kw_only=True):
    """Deliveries of one subscription in a stats window."""

    subscription_id: uuid.UUID
    name: str
    deliveries: int
    success: int
    failed: int


class SubscriptionSkips(msgspec.Struct, kw_only=True):
    """Events of one subscription acknowledged without a request in a stats window, by reason."""

    subscription_id: uuid.UUID
    name: str
    filtered: int = 0
    """Excluded by the subscription's filter."""
    throttled: int = 0
    """Held back by its rate limit."""
    loop_stopped: int = 0
    """Stopped by loop prevention."""


class EventTypeActivity(msgspec.Struct, kw_only=True):
    """Deliveries of one event type in a stats window."""

    event_type: str
    deliveries: int


class SubscriptionWindow(msgspec.Struct, kw_only=True):
    """One subscription's attempts in a window, from the delivery log (the health figures and their alerts)."""

    attempts: int = 0
    """Attempts with an answer or an error (a written-ahead ``pending`` one is not counted)."""
    success: int = 0
    success_rate: float | None = None
    """``success / attempts``; ``None`` without attempts."""
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    timeouts: int = 0
    """Attempts that ran out of ``WEBHOOK_TIMEOUT``."""
    auth_failures: int = 0
    """Attempts the receiver answered 401 or 403."""
    dead: int = 0
    """Deliveries whose attempts ran out in the window (each one a dead letter)."""
    filtered: int = 0
    """Events the subscription's filter excluded (acknowledged, never sent)."""
    throttled: int = 0
    """Events held back by the subscription's rate limit (they waited, then went)."""
    loop_stopped: int = 0
    """Events loop prevention stopped (caused by the subscription's own delivery, or a chain too deep)."""


class DeliveryStats(msgspec.Struct, kw_only=True):
    """Delivery figures since a point in time (deliveries by creation, latencies by attempt start)."""

    since: datetime
    deliveries: int
    success: int
    failed: int
    pending: int
    success_rate: float
    """``success / deliveries``; 0.0 when there were none."""
    failure_rate: float
    """``failed / deliveries``; 0.0 when there were none."""
    latency_p50_ms: float | None
    """Percentiles (linear interpolation) of attempt latencies; ``None`` without attempts."""
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    most_active_subscriptions: list[SubscriptionActivity]
    """The 10 subscriptions with the most deliveries."""
    top_event_types: list[EventTypeActivity]
    """The 10 event types with the most deliveries."""
    active_subscriptions: int
    """Subscriptions whose status is ``active`` now."""
    filtered: int = 0
    """Events acknowledged without a request because a subscription's filter excluded them (no log row)."""
    throttled: int = 0
    """Events a subscription's rate limit held back (counted each time one is held)."""
    loop_stopped: int = 0
    """Events loop prevention stopped."""
    skips_by_subscription: list[SubscriptionSkips] = msgspec.field(default_factory=list)
    """Those three counts per subscription (the 50 with the most), for subscriptions that still exist."""


class RecordResult(msgspec.Struct, kw_only=True):
    """What :meth:`DeliveryStore.record` did with a batch of attempts."""

    recorded: int = 0
    """Attempts newly stored."""
    duplicates: int = 0
    """Attempts already stored (the recorder is at-least-once) or repeated in the batch."""
    skipped: int = 0
    """Attempts of subscriptions that no longer exist."""
    failing: list[tuple[uuid.UUID, str]] = msgspec.field(default_factory=list)
    """(subscription id, reason) of subscriptions now over the failure threshold: to disable."""
    gone: list[tuple[uuid.UUID, str]] = msgspec.field(default_factory=list)
    """(subscription id, reason) of subscriptions whose receiver answered 410 Gone: to disable."""

    def to_disable(self) -> dict[uuid.UUID, str]:
        """Every subscription to disable, with its reason (a 410 wins over the threshold)."""
        return dict(self.failing) | dict(self.gone)


SUBSCRIPTIONS: Final = cast(Table, SubscriptionRow.__table__)


DELIVERIES: Final = cast(Table, DeliveryRow.__table__)


SKIP_COUNTS: Final = cast(Table, SkipCountRow.__table__)


ATTEMPTS: Final = cast(Table, AttemptRow.__table__)


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC (as msgspec decodes one without offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def payload_bytes(document: Any) -> bytes:
    """The request body back from its stored JSON (a string is a body that was not JSON)."""
    if document is None:
        return b""
    if isinstance(document, str):
        return document.encode()
    return msgspec.json.encode(document)


def summary_values(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "trigger": row.trigger,
        "attempts": row.attempts,
        "response_code": row.response_code,
        "error_message": row.error_message,
        "latency_ms": row.latency_ms,
        "stream_seq": row.stream_seq,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
        "last_attempt_at": row.last_attempt_at,
        "next_attempt_at": row.next_attempt_at,
    }


def attempt_detail(row: AttemptRow) -> AttemptDetail:
    return AttemptDetail(
        attempt_id=row.attempt_id,
        delivery_id=row.delivery_id,
        attempt=row.attempt,
        outcome=cast(AttemptOutcome, row.outcome),
        trigger=cast(AttemptTrigger, row.trigger),
        request_url=row.request_url,
        request_headers=dict(row.request_headers),
        response_code=row.response_code,
        response_headers=dict(row.response_headers),
        response_body=row.response_body,
        error=row.error,
        latency_ms=row.latency_ms,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_attempt_at=row.next_attempt_at,
    )
