"""The catalog, publishing an event, and events read back from the stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from streams import (
    EXTERNAL_SOURCES,
    PLATFORM_SOURCE,
    TURBO_SOURCE,
    ActorType,
    CausationChain,
    Event,
    EventContext,
    EventData,
)

__all__ = (
    "ActorBody",
    "ActorView",
    "EventDataView",
    "EventEnvelope",
    "EventPage",
    "EventSource",
    "EventTypeList",
    "EventTypeView",
    "PublishEventBody",
    "PublishedEvent",
    "StoredEvent",
)


EventSource = Literal["turbo", "github", "turbohooks"]
"""Who publishes an event type: Turbo, the outside service it is received from, or turbohooks itself."""
assert get_args(EventSource) == (TURBO_SOURCE, *EXTERNAL_SOURCES, PLATFORM_SOURCE), "EventSource lists the sources"


class EventTypeView(msgspec.Struct, kw_only=True):
    """One event type of the catalog."""

    event_type: str
    entity_type: str
    action: str
    subject: str
    """The NATS subject its events are published on: ``turbo.<event_type>``."""
    trigger: str
    description: str
    source: EventSource
    """``turbo`` for the types Turbo publishes; ``github`` for those the inbound webhook receives."""


class EventTypeList(msgspec.Struct, kw_only=True):
    """The catalog: Turbo's types in the design document's order, then those received from outside."""

    items: list[EventTypeView]
    total: int
    """How many ``items`` (with ``?source=turbo``: Turbo's 58)."""
    by_source: dict[str, int]
    """How many types each source has in the whole catalog: ``{"turbo": 59, "github": 10}``."""


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
    causation: (
        Annotated[
            str,
            Meta(
                max_length=200,
                description="The `Turbohooks-Causation` header of the delivery this event answers: sets "
                "`causation_id` and the causation chain (loop prevention).",
            ),
        ]
        | None
    ) = None


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
    chain: CausationChain | None = None

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
