"""Every request and response body of the admin API, as msgspec Structs.

Request bodies refuse fields they do not know (``forbid_unknown_fields``), so a
typo is an error naming the field rather than a silently ignored setting.
Responses reuse the engine's own Structs where they are the contract already
(``SubscriptionView``, ``DeliverySummary``, ``AttemptDetail``, ``DeliveryStats``,
``Event``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from consumers import AttemptDetail, DeliveryStats, DeliverySummary, SubscriptionView
from streams import ActorType, Event, EventContext, EventData

__all__ = (
    "ActorBody",
    "ActorView",
    "DeliveryDetailView",
    "DeliveryPage",
    "DeliveryTestResult",
    "EventDataView",
    "EventEnvelope",
    "EventPage",
    "EventTypeList",
    "EventTypeView",
    "FieldProblem",
    "HealthStatus",
    "Problem",
    "PublishEventBody",
    "PublishedEvent",
    "ReadyCheck",
    "ReadyStatus",
    "RecoverResult",
    "ReplayBody",
    "ReplayItem",
    "ReplayResult",
    "RetryQueued",
    "StatsView",
    "StoredEvent",
    "SubscriptionCreateBody",
    "SubscriptionLag",
    "SubscriptionPage",
    "SubscriptionUpdateBody",
)

Seq = Annotated[int, Meta(ge=1, le=2**63 - 1, description="A stream sequence number (the first event is 1).")]
When = Annotated[
    str,
    Meta(
        max_length=64,
        description="An RFC 3339 time (`2026-11-29T05:07:26Z`) or a duration before now (`30m`, `2h`, `7d`).",
        examples=["2h", "2026-11-29T05:07:26Z"],
    ),
]


# --- problems ---------------------------------------------------------------------


class FieldProblem(msgspec.Struct, kw_only=True):
    """What is wrong with one field of the request."""

    field: str
    """Dotted path of the field: ``url``, ``event_types[0]``, ``data.current``, ``since``."""
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details document (``application/problem+json``)."""

    type: str
    """A URI naming the kind of problem (``urn:turbohooks:problem:validation``…), or ``about:blank``."""
    title: str
    """Short summary of the kind of problem."""
    status: int
    """The HTTP status code."""
    detail: str
    """What went wrong this time, and what to do about it."""
    field: str | None = None
    """The first offending field, when the problem is about one."""
    errors: list[FieldProblem] = msgspec.field(default_factory=list)
    """Every offending field (or, for ``/ready``, every failed part)."""


# --- health -----------------------------------------------------------------------


class HealthStatus(msgspec.Struct, kw_only=True):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class ReadyCheck(msgspec.Struct, kw_only=True):
    """One dependency checked by ``/ready``."""

    name: Literal["nats", "streams", "database"]
    ok: bool
    detail: str | None = None


class ReadyStatus(msgspec.Struct, kw_only=True):
    """Every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: list[ReadyCheck] = msgspec.field(default_factory=list)


# --- event types and events ---------------------------------------------------------


class EventTypeView(msgspec.Struct, kw_only=True):
    """One event type of the catalog."""

    event_type: str
    entity_type: str
    action: str
    subject: str
    """The NATS subject its events are published on: ``turbo.<event_type>``."""
    trigger: str
    description: str


class EventTypeList(msgspec.Struct, kw_only=True):
    """The catalog, in the design document's order."""

    items: list[EventTypeView]
    total: int


class ActorBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who caused the event."""

    type: ActorType = "system"
    name: Annotated[str, Meta(max_length=500)] = "turbo"
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class PublishEventBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An event to publish, for the parts of Turbo that do not speak Python."""

    event_type: Annotated[
        str, Meta(description="An event type of the catalog (`GET /api/event-types`).", examples=["issue.created"])
    ]
    entity_id: Annotated[str | int, Meta(description="Id of the entity the event is about.", examples=["42"])]
    entity_type: str | None = None
    """Optional; when given it must be the catalog's entity type of ``event_type``."""
    data: EventData | None = None
    context: EventContext | None = None
    actor: ActorBody | None = None
    event_id: uuid.UUID | None = None
    """Give one to make retries safe: the same id within the duplicate window is stored once."""
    timestamp: datetime | None = None
    """With a time zone; default: now."""
    causation_id: uuid.UUID | None = None


class PublishedEvent(msgspec.Struct, kw_only=True):
    """JetStream stored the event."""

    event_id: uuid.UUID
    seq: int
    """Its sequence number in the stream."""
    stream: str
    subject: str
    duplicate: bool
    """True when the stream already held this ``event_id`` (it is stored once)."""


class ActorView(msgspec.Struct, kw_only=True):
    """Who caused the event."""

    type: ActorType
    name: str
    metadata: dict[str, Any]


class EventDataView(msgspec.Struct, kw_only=True):
    """The entity's state: now, before (for updates), and which fields changed."""

    current: dict[str, Any]
    previous: dict[str, Any] | None
    changes: list[str]


class EventEnvelope(msgspec.Struct, kw_only=True):
    """The event envelope, exactly as delivered to webhooks."""

    event_id: uuid.UUID
    event_type: str
    timestamp: datetime
    entity_type: str
    entity_id: str
    action: str
    actor: ActorView
    data: EventDataView
    context: EventContext
    causation_id: uuid.UUID | None
    schema_version: int

    @classmethod
    def of(cls, event: Event) -> EventEnvelope:
        """The envelope of ``event`` (``streams.Event`` has defaults OpenAPI cannot describe)."""
        return msgspec.convert(msgspec.to_builtins(event), cls)


class StoredEvent(msgspec.Struct, kw_only=True):
    """An event as read back from the stream."""

    seq: int
    subject: str
    stored_at: datetime
    """When JetStream stored it (``since`` and ``until`` compare with this)."""
    event: EventEnvelope


class EventPage(msgspec.Struct, kw_only=True):
    """Events newest first; pass ``next_before_seq`` as ``before_seq`` for the next page."""

    items: list[StoredEvent]
    scanned: int
    """Events read from the stream to fill this page (the ``entity_id`` filter is applied after reading)."""
    truncated: bool
    """True when the scan stopped at its cap before the range was exhausted: more may match."""
    next_before_seq: int | None = None
    """Continue from here; ``null`` when the range is exhausted."""


# --- subscriptions -------------------------------------------------------------------

Headers = Annotated[dict[str, str], Meta(description="Custom headers sent with every delivery.")]
Patterns = Annotated[
    list[str],
    Meta(
        max_length=100,
        description="Event type patterns: `issue.created`, `issue.*`, `*.created`, or `*` for every event.",
        examples=[["issue.*", "comment.created"]],
    ),
]
Schedule = Annotated[
    list[float], Meta(max_length=50, description="Seconds before each retry; `null` uses the global schedule.")
]
InFlight = Annotated[int, Meta(ge=1, le=1024, description="Concurrent deliveries; `null` uses the global setting.")]


class SubscriptionCreateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new subscription. The answer carries its signing secret, shown this once."""

    name: Annotated[str, Meta(max_length=100, description="Unique; for people.")]
    url: Annotated[str, Meta(max_length=2048, description="Where to deliver: https unless WEBHOOK_ALLOW_HTTP.")]
    event_types: Patterns
    integration: str = "webhook"
    integration_config: dict[str, Any] = msgspec.field(default_factory=dict)
    headers: Headers = msgspec.field(default_factory=dict)
    active: bool = True
    """``false`` creates it paused."""
    retry_schedule: Schedule | None = None
    max_in_flight: InFlight | None = None
    filters: dict[str, Any] | None = None


class SubscriptionUpdateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update: only the fields given change. ``active: false`` pauses, ``true`` resumes."""

    name: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET
    url: Annotated[str, Meta(max_length=2048)] | UnsetType = UNSET
    event_types: Patterns | UnsetType = UNSET
    integration_config: dict[str, Any] | UnsetType = UNSET
    headers: Headers | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    retry_schedule: Schedule | UnsetType | None = UNSET
    max_in_flight: InFlight | UnsetType | None = UNSET
    filters: dict[str, Any] | UnsetType | None = UNSET


class SubscriptionPage(msgspec.Struct, kw_only=True):
    """A page of subscriptions, oldest first."""

    items: list[SubscriptionView]
    total: int
    limit: int
    offset: int


class DeliveryTestResult(msgspec.Struct, kw_only=True):
    """The receiver's answer to a signed test event (not recorded in the delivery log)."""

    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    url: str
    success: bool
    """A 2xx answer."""
    status: int | None
    """The receiver's HTTP status; ``null`` when it could not be reached."""
    latency_ms: float
    body: str
    """The start of the answer's body (``WEBHOOK_RESPONSE_BODY_CAP`` bytes at most)."""
    truncated: bool
    error: str | None = None


class RecoverResult(msgspec.Struct, kw_only=True):
    """Failed deliveries queued for one more attempt each."""

    subscription_id: uuid.UUID
    since: datetime
    queued: int
    max_deliveries: int
    truncated: bool
    """True when more than ``max_deliveries`` failed: call again to queue the rest."""


class ReplayBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which stored events to deliver again to one subscription: a time or a sequence range."""

    since: When | None = None
    until: When | None = None
    from_seq: Seq | None = None
    to_seq: Seq | None = None
    event_types: Patterns | None = None
    """Narrow to these patterns (intersected with the subscription's own)."""
    dry_run: bool = False
    """List what would be sent; queue nothing."""


class ReplayItem(msgspec.Struct, kw_only=True):
    """One event of a replay."""

    seq: int
    event_id: uuid.UUID | None
    """``null`` for a message that is not a valid event (it is skipped)."""
    event_type: str
    stored_at: datetime


class ReplayResult(msgspec.Struct, kw_only=True):
    """What a replay queued (or, with ``dry_run``, would queue)."""

    subscription_id: uuid.UUID
    dry_run: bool
    event_types: list[str]
    """The event types replayed: the subscription's, narrowed by the request's patterns."""
    first_seq: int
    """The range read: ``[first_seq, last_seq]``."""
    last_seq: int
    matched: int
    """Events of the range that match."""
    queued: int
    """Events queued for delivery (0 for a dry run)."""
    max_events: int
    """The most events one replay handles."""
    truncated: bool
    """True when the range held more than ``max_events``: replay again from ``next_seq``."""
    next_seq: int | None = None
    events: list[ReplayItem] = msgspec.field(default_factory=list)


# --- deliveries -----------------------------------------------------------------------


class DeliveryPage(msgspec.Struct, kw_only=True):
    """A page of the delivery log, newest first."""

    items: list[DeliverySummary]
    total: int
    limit: int
    offset: int


class DeliveryDetailView(DeliverySummary, kw_only=True):
    """One delivery: the request sent, the latest answer, and every attempt (oldest first)."""

    request_url: str | None = None
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Of the latest attempt, signatures included (they cannot be replayed elsewhere)."""
    request_body: str = ""
    """The body sent (the event envelope for webhooks)."""
    response_body: str | None = None
    attempt_log: list[AttemptDetail] = msgspec.field(default_factory=list)


class RetryQueued(msgspec.Struct, kw_only=True):
    """A retry is queued; a worker makes the attempt and the log shows it."""

    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    queued: bool = True


# --- stats ----------------------------------------------------------------------------


class SubscriptionLag(msgspec.Struct, kw_only=True):
    """How far one subscription's consumer is behind the stream."""

    subscription_id: uuid.UUID
    name: str
    status: str
    pending: int | None
    """Events not yet delivered; ``null`` when its consumer is missing."""
    ack_pending: int | None
    """Events in flight or waiting for a retry."""


class StatsView(msgspec.Struct, kw_only=True):
    """Delivery figures over a window, and each subscription's lag now."""

    window: str
    window_seconds: float
    since: datetime
    deliveries: DeliveryStats
    lag: list[SubscriptionLag]
