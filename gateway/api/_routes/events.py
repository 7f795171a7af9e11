"""``POST /api/events`` (publish) and ``GET /api/events[/{event_id}]`` (history, read from the stream)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Final

from litestar import Router, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as JsNotFoundError

from streams import (
    Actor,
    EventValidationError,
    NotFoundError,
    decode_event,
    event_subject,
    filter_subjects,
    normalize_patterns,
)

from ...operations import ALL_SUBJECTS, parse_when, read_backward, seq_at_time, stream_bounds
from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, Limit, When, refuse_nul
from .._problems import responses
from .._schemas import EventEnvelope, EventPage, PublishedEvent, PublishEventBody, StoredEvent

__all__ = ("MAX_EVENT_ID_SCAN", "MAX_EVENT_SCAN", "router")

MAX_EVENT_SCAN: Final = 10_000
"""Events one ``GET /api/events`` reads at most (the ``entity_id`` filter is applied after reading)."""
MAX_EVENT_ID_SCAN: Final = 200_000
"""Events ``GET /api/events/{event_id}`` looks through at most, newest first (headers only)."""
_WINDOW: Final = 1024
_MSG_ID: Final = "Nats-Msg-Id"


@post(
    "/",
    summary="Publish an event",
    description="For the parts of Turbo that are not Python. Returns once JetStream stored the event.",
    responses=responses(400, 413, 422, 503),
)
async def publish_event(
    engine: EngineDep,
    data: JSONBody[PublishEventBody],
    traceparent: Annotated[
        str | None,
        HeaderParameter(
            name="traceparent",
            required=False,
            description="W3C trace context of the caller: with TURBOHOOKS_TRACING the publish continues its trace.",
        ),
    ] = None,
    tracestate: Annotated[
        str | None, HeaderParameter(name="tracestate", required=False, description="W3C tracestate, with traceparent.")
    ] = None,
) -> PublishedEvent:
    refuse_nul(data.entity_id, "entity_id")
    actor = None
    if data.actor is not None:
        actor = Actor(type=data.actor.type, name=data.actor.name, metadata=data.actor.metadata)
    ack = await engine.publisher.emit(
        event_type=data.event_type,
        entity_id=data.entity_id,
        entity_type=data.entity_type,
        data=data.data,
        context=data.context,
        actor=actor,
        event_id=data.event_id,
        timestamp=data.timestamp,
        causation_id=data.causation_id,
        traceparent=traceparent,
        tracestate=tracestate,
        causation=data.causation,
    )
    return PublishedEvent(
        event_id=ack.event_id,
        seq=ack.seq,
        stream=ack.stream,
        subject=event_subject(data.event_type),
        duplicate=ack.duplicate,
    )


def _stored(msg: Msg) -> StoredEvent | None:
    try:
        event = decode_event(msg.data, subject=msg.subject)
    except EventValidationError:
        return None  # not an event of the contract (published by hand, its type not its subject's): not history
    meta = msg.metadata
    return StoredEvent(
        seq=meta.sequence.stream, subject=msg.subject, stored_at=meta.timestamp, event=EventEnvelope.of(event)
    )


@get(
    "/",
    summary="Read event history from the stream, newest first",
    description=f"Reads at most {MAX_EVENT_SCAN} events per call; `next_before_seq` continues.",
    responses=responses(400, 422, 503),
)
async def list_events(
    engine: EngineDep,
    event_type: Annotated[
        str | None, QueryParameter(max_length=200, description="An event type or pattern: `issue.created`, `issue.*`.")
    ] = None,
    entity_id: Annotated[
        str | None, QueryParameter(max_length=500, description="Only events about this entity.")
    ] = None,
    since: When = None,
    until: When = None,
    before_seq: Annotated[
        int | None, QueryParameter(ge=1, le=2**63 - 1, description="Only events before this sequence (paging).")
    ] = None,
    limit: Limit = 50,
) -> EventPage:
    subjects = list(ALL_SUBJECTS)
    if event_type is not None:
        try:
            subjects = filter_subjects(normalize_patterns([event_type]))
        except EventValidationError as exc:
            raise EventValidationError("event_type", exc.problem) from None
    js, stream = engine.js, engine.settings.stream_name
    start = parse_when(since, "since") if since is not None else None
    end = parse_when(until, "until") if until is not None else None
    bounds = await stream_bounds(js, stream)
    first, last = bounds.first, bounds.last
    if before_seq is not None:
        last = min(last, before_seq - 1)
    if end is not None:
        last = min(last, await seq_at_time(js, stream, end, bounds) - 1)
    if start is not None:
        first = max(first, await seq_at_time(js, stream, start, bounds))
    items: list[StoredEvent] = []
    scanned = 0
    next_before: int | None = None
    truncated = False
    reader = read_backward(js, stream, subjects, first=first, last=last, max_window=_WINDOW)
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            scanned += 1
            stored = _stored(msg)
            if stored is not None and (entity_id is None or stored.event.entity_id == entity_id):
                items.append(stored)
            seq = msg.metadata.sequence.stream
            if len(items) >= limit or scanned >= MAX_EVENT_SCAN:
                next_before = seq if seq > first else None
                truncated = len(items) < limit and next_before is not None
                break
    return EventPage(items=items, scanned=scanned, truncated=truncated, next_before_seq=next_before)


async def _full(js: JetStreamContext, stream: str, headers_only: Msg) -> StoredEvent | None:
    """The whole event of a message read headers-only; ``None`` if it is gone or not an event."""
    meta = headers_only.metadata
    try:
        raw = await js.get_msg(stream, meta.sequence.stream)
        event = decode_event(raw.data or b"", subject=headers_only.subject)
    except (JsNotFoundError, EventValidationError):
        return None  # aged out meanwhile, or a message that is not an event
    return StoredEvent(
        seq=meta.sequence.stream, subject=headers_only.subject, stored_at=meta.timestamp, event=EventEnvelope.of(event)
    )


@get(
    "/{event_id:uuid}",
    summary="One event, by id",
    description=f"Looks through the newest {MAX_EVENT_ID_SCAN} events of the stream.",
    responses=responses(400, 404, 503),
)
async def get_event(engine: EngineDep, event_id: FromPath[uuid.UUID]) -> StoredEvent:
    js, stream = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, stream)
    wanted = str(event_id)
    scanned = 0
    # Headers only: the publisher's Nats-Msg-Id is the event id, so the bodies need not travel.
    reader = read_backward(js, stream, ALL_SUBJECTS, first=bounds.first, last=bounds.last, headers_only=True)
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            scanned += 1
            if (msg.headers or {}).get(_MSG_ID) == wanted:
                found = await _full(js, stream, msg)
                if found is not None:
                    return found
            if scanned >= MAX_EVENT_ID_SCAN:
                break
    raise NotFoundError(f"event {event_id} is not among the newest {scanned} events of stream {stream}")


router = Router(
    path="/api/events",
    tags=["events"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[publish_event, list_events, get_event],
)
