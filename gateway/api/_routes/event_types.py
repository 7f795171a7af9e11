"""``GET /api/event-types``: the catalog."""

from __future__ import annotations

from litestar import Router, get

from streams import EVENT_CATALOG, event_subject

from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._problems import responses
from .._schemas import EventTypeList, EventTypeView

__all__ = ("router",)


@get("/", summary="The catalog of event types", responses=responses())
async def list_event_types() -> EventTypeList:
    items = [
        EventTypeView(
            event_type=info.event_type,
            entity_type=info.entity_type,
            action=info.action,
            subject=event_subject(info.event_type),
            trigger=info.trigger,
            description=info.description,
        )
        for info in EVENT_CATALOG.values()
    ]
    return EventTypeList(items=items, total=len(items))


router = Router(
    path="/api/event-types",
    tags=["events"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[list_event_types],
)
