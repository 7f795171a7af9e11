"""``GET /api/event-types``: the catalog, Turbo's types and those received from outside (``?source=``)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from litestar import Router, get
from litestar.params import QueryParameter

from streams import KNOWN_EVENT_TYPES, event_subject

from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._problems import responses
from .._schemas import EventSource, EventTypeList, EventTypeView

__all__ = ("router",)

_BY_SOURCE = dict(Counter(info.source for info in KNOWN_EVENT_TYPES.values()))


@get("/", summary="The catalog of event types", responses=responses(400))
async def list_event_types(
    source: Annotated[
        EventSource | None,
        QueryParameter(
            description="Only the types of this source: `turbo` (Turbo's 59), `github` (inbound) "
            "or `turbohooks` (its own `system.*`)."
        ),
    ] = None,
) -> EventTypeList:
    items = [
        EventTypeView(
            event_type=info.event_type,
            entity_type=info.entity_type,
            action=info.action,
            subject=event_subject(info.event_type),
            trigger=info.trigger,
            description=info.description,
            source=info.source,  # type: ignore[arg-type]  # EventSource lists the catalog's sources
        )
        for info in KNOWN_EVENT_TYPES.values()
        if source is None or info.source == source
    ]
    return EventTypeList(items=items, total=len(items), by_source=_BY_SOURCE)


router = Router(
    path="/api/event-types",
    tags=["events"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[list_event_types],
)
