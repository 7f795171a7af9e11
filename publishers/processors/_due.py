"""The scheduler's pure model: what it knows of an entity with a time, and what is due when.

:func:`learn` folds an event into a :class:`ScheduledItem`; :func:`due_now` says
which time-based event is due for it at a given time (at most one: the tightest
threshold reached); :func:`due_event` builds that event. Ids are derived from what
an event is about (entity, threshold, due date), so every scheduler, on every
tick, computes the same one. No I/O here: :class:`~publishers.processors.Scheduler`
drives it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final, Literal

import msgspec

from streams import Actor, Event, EventContext, EventData
from streams.settings import SchedulerSettings

from .._rules import CLOSED_STATUS

__all__ = (
    "ACTOR",
    "LEARNED_FROM",
    "NAMESPACE",
    "Due",
    "ScheduledItem",
    "due_event",
    "due_now",
    "label",
    "learn",
    "parse_when",
)

_log = logging.getLogger("turbohooks.scheduler")


NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://turbohooks/scheduler")
ACTOR: Final = Actor(type="system", name="turbohooks-scheduler")

Kind = Literal["issue", "milestone", "calendar"]

TIME_FIELD: Final[dict[str, str]] = {"issue": "due_date", "milestone": "due_date", "calendar": "start_time"}
LEARNED_FROM: Final = (
    "issue.created",
    "issue.updated",
    "issue.status_changed",
    "issue.closed",
    "issue.reopened",
    "milestone.created",
    "milestone.updated",
    "milestone.status_changed",
    "milestone.completed",
    "calendar.event_created",
)
_DONE_STATUSES: Final[dict[str, frozenset[str]]] = {
    "issue": frozenset({CLOSED_STATUS}),
    "milestone": frozenset({"completed", "cancelled", "closed"}),
    "calendar": frozenset({"cancelled"}),
}
# What of the entity's state the time-based events carry, so a reminder can say what it is about.
_STATE_FIELDS: Final = ("title", "name", "status", "priority", "assignee", "project_id", "milestone_id", "location")


def label(seconds: float) -> str:
    """``604800`` → ``7d``, ``900`` → ``15m``: the largest unit that divides exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class ScheduledItem(msgspec.Struct, frozen=True, kw_only=True):
    """An issue, milestone or calendar event with a time, as learned from the stream."""

    kind: Kind
    entity_id: str
    at: datetime | None = None
    """The due date (end of day for a date) or start time, in UTC; None: nothing to schedule."""
    text: str | None = None
    """The due date or start time as Turbo wrote it."""
    open: bool = True
    state: dict[str, Any] = msgspec.field(default_factory=dict)
    context: EventContext = EventContext()
    cause: uuid.UUID | None = None
    """The event that set ``at``."""
    seq: int = 0
    """The last stream sequence applied."""


def parse_when(value: object) -> datetime | None:
    """A due date or start time in UTC: an ISO date means the end of that day; None when not a time."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text) + timedelta(days=1), clock_time(0), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_open(event: Event, kind: str, was_open: bool) -> bool:
    kind_done = _DONE_STATUSES[kind]
    if event.event_type in ("issue.closed", "milestone.completed"):
        return False
    if event.event_type == "issue.reopened":
        return True
    current, changes = event.data.current, event.data.changes
    # An update that lists its changes says whether the status moved; one that
    # does not, or a creation, is taken at its word.
    told = not changes or "status" in changes or event.event_type.endswith(("created", "status_changed"))
    status = current.get("status")
    if isinstance(status, str) and told:  # a status that is not a string says nothing about being open
        return status not in kind_done
    return was_open


def learn(item: ScheduledItem | None, event: Event, seq: int) -> ScheduledItem | None:
    """The item after ``event`` (stored at ``seq``); None while there is nothing to track.

    Returns ``item`` itself when the event changes nothing (so nothing is written).
    """
    kind = event.entity_type
    if kind not in TIME_FIELD or event.event_type not in LEARNED_FROM:
        return item
    if item is not None and item.seq >= seq:
        return item
    base = item or ScheduledItem(kind=kind, entity_id=event.entity_id)  # type: ignore[arg-type]
    field = TIME_FIELD[kind]
    current = event.data.current
    at, text, cause = base.at, base.text, base.cause
    if field in current and event.event_type != "milestone.completed":
        value = current[field]
        text = None if value is None else str(value)
        at = parse_when(value)
        if value is not None and at is None:
            _log.warning("%s %s: %s %r is not an ISO date or datetime; ignored", kind, event.entity_id, field, value)
        if at != base.at:
            cause = event.event_id
    state: dict[str, Any] = {**base.state}
    state.update((k, current[k]) for k in _STATE_FIELDS if k in current)
    context = event.context if event.context != EventContext() else base.context
    new = msgspec.structs.replace(
        base, at=at, text=text, open=_is_open(event, kind, base.open), state=state, context=context, cause=cause
    )
    if item is None and new.at is None:
        return None
    if item is not None and new == item:
        return item
    return msgspec.structs.replace(new, seq=seq)


class Due(msgspec.Struct, frozen=True, kw_only=True):
    """An event that is due now for an item."""

    event_type: str
    label: str
    """``7d``, ``3d``, ``1d`` (threshold), ``overdue``, or ``15m`` (starting soon)."""
    event_id: uuid.UUID
    """Derived from what it is about: the same in every scheduler, on every tick."""


def due_now(item: ScheduledItem, now: datetime, settings: SchedulerSettings) -> Due | None:
    """What is due for ``item`` at ``now``: at most one event (the tightest threshold reached)."""
    if not item.open or item.at is None:
        return None
    if item.kind == "calendar":
        if item.at - timedelta(seconds=settings.starting_soon) <= now < item.at:
            return _due(item, "calendar.event_starting_soon", label(settings.starting_soon))
        return None
    if now >= item.at:
        return _due(item, f"{item.kind}.overdue", "overdue")
    remaining = (item.at - now).total_seconds()
    reached = [t for t in settings.due_thresholds if remaining <= t]
    if not reached:
        return None
    return _due(item, f"{item.kind}.due_date_approaching", label(min(reached)))


def _due(item: ScheduledItem, event_type: str, name: str) -> Due:
    assert item.at is not None
    key = f"{event_type}|{item.entity_id}|{name}|{item.at.isoformat()}"
    return Due(event_type=event_type, label=name, event_id=uuid.uuid5(NAMESPACE, key))


def due_event(item: ScheduledItem, due: Due, now: datetime) -> Event:
    assert item.at is not None
    field = TIME_FIELD[item.kind]
    at_field = "starts_at" if item.kind == "calendar" else "due_at"
    current: dict[str, Any] = {**item.state, field: item.text, at_field: item.at.isoformat()}
    if due.label == "overdue":
        current["overdue_since"] = item.at.isoformat()
    elif item.kind == "calendar":
        current["starts_in"] = due.label
    else:
        current["threshold"] = due.label
    context = item.context
    if item.kind == "calendar" and context.calendar_event_id is None:
        context = msgspec.structs.replace(context, calendar_event_id=item.entity_id)
    return Event(
        event_id=due.event_id,
        event_type=due.event_type,
        timestamp=now.astimezone(UTC),
        entity_type=item.kind,
        entity_id=item.entity_id,
        action=due.event_type.partition(".")[2],
        actor=ACTOR,
        data=EventData(current=current),
        context=context,
        causation_id=item.cause,
    )
