"""Live events (server-sent events of the stream), one event's envelope and deliveries, and the catalog page."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Final

import msgspec
from litestar import Request, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template
from nats.aio.msg import Msg

from streams import (
    EVENT_CATALOG,
    NATS_ERRORS,
    EventValidationError,
    build_event,
    decode_event,
    encode_event,
    filter_subjects,
    match_event_types,
    normalize_patterns,
)

from ..api._params import EngineDep
from ..api._routes.events import get_event
from ..api._schemas import StoredEvent
from ._common import render
from ._forms import catalog_groups
from ._queries import deliveries_of_events

__all__ = ("HANDLERS",)

_KEEPALIVE: Final = 15.0
_QUEUE: Final = 1000
"""Events held for a slow browser; beyond it the oldest are dropped (the view says so)."""


@get("/settings/webhooks/live", name="ui-live")
async def live_page(request: Request[Any, Any, Any]) -> Template:
    return render("live.html.j2", request, active="live", pattern=request.query_params.get("pattern") or "*")


def _subjects(pattern: str) -> list[str]:
    patterns = [p.strip() for p in pattern.split(",") if p.strip()] or ["*"]
    return filter_subjects(normalize_patterns(patterns, field="pattern"))


@get("/settings/webhooks/live/stream", name="ui-live-stream")
async def live_stream(request: Request[Any, Any, Any], engine: EngineDep) -> ServerSentEvent:
    """Each event published from now on that matches ``pattern``, as it is stored (core NATS, no consumer)."""
    subjects = _subjects(request.query_params.get("pattern") or "*")
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=_QUEUE)

    async def on_message(msg: Msg) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(msg)

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        subs = [await engine.nc.subscribe(subject, cb=on_message) for subject in subjects]
        try:
            yield ServerSentEventMessage(event="ready", data=",".join(subjects))
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), _KEEPALIVE)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                try:
                    event = decode_event(msg.data)
                except EventValidationError:
                    continue
                summary = {
                    "event_id": str(event.event_id),
                    "event_type": event.event_type,
                    "entity_type": event.entity_type,
                    "entity_id": event.entity_id,
                    "timestamp": event.timestamp.isoformat(),
                    "actor": event.actor.name or event.actor.type,
                }
                yield ServerSentEventMessage(event="turbo-event", data=msgspec.json.encode(summary).decode())
        finally:
            for sub in subs:
                with contextlib.suppress(*NATS_ERRORS):
                    await sub.unsubscribe()

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/settings/webhooks/events/{event_id:uuid}", name="ui-event")
async def event_page(request: Request[Any, Any, Any], engine: EngineDep, event_id: FromPath[uuid.UUID]) -> Template:
    # The API's own lookup (newest first, headers only), called as a function.
    stored: StoredEvent = await get_event.fn(engine=engine, event_id=event_id)
    deliveries = await deliveries_of_events(engine, [event_id])
    names = {sub.id: sub.name for sub in await engine.subscriptions.list(limit=500)}
    return render(
        "event.html.j2",
        request,
        active="live",
        stored=stored,
        envelope=msgspec.to_builtins(stored.event),
        deliveries=deliveries,
        names=names,
    )


@get("/settings/webhooks/events", name="ui-catalog")
async def catalog_page(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    subs = await engine.subscriptions.list(limit=500)
    matching: dict[str, list[Any]] = {event_type: [] for event_type in EVENT_CATALOG}
    for sub in subs:
        for event_type in match_event_types(sub.event_types):
            matching.setdefault(event_type, []).append(sub)
    examples = {
        event_type: encode_event(
            build_event(
                event_type=event_type,
                entity_id=f"{info.entity_type}-123",
                data={"current": {"id": f"{info.entity_type}-123", "title": "An example"}},
                actor={"type": "user", "name": "alice"},
                event_id=uuid.UUID(int=0),
            )
        ).decode()
        for event_type, info in EVENT_CATALOG.items()
    }
    return render(
        "catalog.html.j2",
        request,
        active="catalog",
        groups=catalog_groups(),
        matching=matching,
        examples=examples,
        total=len(EVENT_CATALOG),
    )


HANDLERS: Final = (live_page, live_stream, event_page, catalog_page)
