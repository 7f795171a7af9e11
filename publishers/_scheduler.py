"""Time-based events: due dates, overdue, starting soon, the daily digest and the weekly report.

The :class:`Scheduler` learns from the events stream what has a time:

* issues and milestones: ``due_date`` of ``<entity>.created`` / ``updated`` (an ISO
  date means the end of that day, UTC; an ISO datetime is taken as is), closed
  by ``status`` (``closed``; ``completed`` or ``cancelled`` for milestones),
  ``issue.closed`` or ``milestone.completed``, reopened by
  ``issue.reopened`` or a status that is not closed;
* calendar events: ``start_time`` of ``calendar.event_created``.

It keeps them in a NATS KV bucket and, at each tick of its clock, publishes:

* ``<entity>.due_date_approaching`` when the due date is within a threshold
  (``TURBOHOOKS_DUE_THRESHOLDS``, default 7d,3d,1d): one event per threshold,
  only the tightest one reached when several are (an issue created two days
  before its due date gets the 3d warning, not 7d and 3d);
* ``<entity>.overdue`` once the due date has passed;
* ``calendar.event_starting_soon`` ``TURBOHOOKS_STARTING_SOON`` (15m) before the start;
* ``system.daily_digest`` at ``TURBOHOOKS_DIGEST_TIME`` (09:00 UTC) and
  ``system.weekly_report`` at that time on ``TURBOHOOKS_WEEKLY_REPORT_DAY``:
  counts and highlights of the last 24 hours / 7 days, read from the stream.
  One missed while no scheduler ran is sent late, once; none is sent for a
  time before the scheduler's state was created.

Exactly once: each event's id (its ``Nats-Msg-Id``) is derived from what it is
about (entity, threshold, due date; or the digest's time), so schedulers running
side by side, or one restarted, publish the same id and JetStream's duplicate
window stores it once; beyond the window, a ``fired.<id>`` marker in the bucket
says it was published. A due date that moves gets new ids (the old ones are
never published: withdrawn), and a closed issue fires nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final, Literal

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from streams import (
    NATS_ERRORS,
    Actor,
    Event,
    EventContext,
    EventData,
    EventValidationError,
    PublishError,
    build_event,
    decode_event,
    event_subject,
    open_bucket,
)
from streams.settings import SCHEDULER_VARIABLES, SchedulerSettings

from ._changes import CLOSED_STATUS
from ._follow import FollowingProcessor, RecordStore, StreamFollower, decode_messages, kv_key
from ._publisher import EventPublisher

__all__ = (
    "SCHEDULER_BUCKET",
    "SCHEDULER_VARIABLES",
    "Due",
    "ScheduledItem",
    "Scheduler",
    "SchedulerSettings",
    "due_now",
    "learn",
    "parse_when",
)

_log = logging.getLogger("turbohooks.scheduler")

SCHEDULER_BUCKET: Final = "turbohooks_scheduler"
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://turbohooks/scheduler")
_ACTOR: Final = Actor(type="system", name="turbohooks-scheduler")
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HIGHLIGHTS: Final = 10
_EPOCH: Final = "epoch"

Kind = Literal["issue", "milestone", "calendar"]

_TIME_FIELD: Final[dict[str, str]] = {"issue": "due_date", "milestone": "due_date", "calendar": "start_time"}
_LEARNED_FROM: Final = (
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


# -- settings: streams.settings.SchedulerSettings (rows TURBOHOOKS_DUE_THRESHOLDS, ...) ----------


def label(seconds: float) -> str:
    """``604800`` → ``7d``, ``900`` → ``15m``: the largest unit that divides exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# -- what the scheduler knows --------------------------------------------------------


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
    if "status" in current and told:
        return current["status"] not in kind_done
    return was_open


def learn(item: ScheduledItem | None, event: Event, seq: int) -> ScheduledItem | None:
    """The item after ``event`` (stored at ``seq``); None while there is nothing to track.

    Returns ``item`` itself when the event changes nothing (so nothing is written).
    """
    kind = event.entity_type
    if kind not in _TIME_FIELD or event.event_type not in _LEARNED_FROM:
        return item
    if item is not None and item.seq >= seq:
        return item
    base = item or ScheduledItem(kind=kind, entity_id=event.entity_id)  # type: ignore[arg-type]
    field = _TIME_FIELD[kind]
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
    return Due(event_type=event_type, label=name, event_id=uuid.uuid5(_NAMESPACE, key))


def last_daily(now: datetime, at: clock_time) -> datetime:
    """The latest daily occurrence of ``at`` (UTC) at or before ``now``."""
    today = datetime.combine(now.date(), at, UTC)
    return today if today <= now else today - timedelta(days=1)


def last_weekly(now: datetime, at: clock_time, weekday: int) -> datetime:
    """The latest occurrence of ``at`` on ``weekday`` at or before ``now``."""
    occurrence = last_daily(now, at)
    return occurrence - timedelta(days=(occurrence.weekday() - weekday) % 7)


# -- reports -------------------------------------------------------------------------


class _Tally:
    """Counts and highlights of a period, from the stored events."""

    _HIGHLIGHT_TYPES: Final = {
        "issue.closed": "issues_closed",
        "milestone.completed": "milestones_completed",
        "initiative.completed": "initiatives_completed",
        "project.created": "projects_created",
        "project.archived": "projects_archived",
        "project.completion_milestone": "completion_milestones",
        "issue.overdue": "overdue",
        "milestone.overdue": "overdue",
    }

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        # The latest few of each kind: the period's most recent news.
        self.highlights: dict[str, deque[dict[str, Any]]] = {
            name: deque(maxlen=_HIGHLIGHTS) for name in self._HIGHLIGHT_TYPES.values()
        }

    def add(self, subject: str, payload: bytes) -> None:
        event_type = subject.partition(".")[2]
        self.counts[event_type] += 1
        name = self._HIGHLIGHT_TYPES.get(event_type)
        if name is None:
            return  # only highlighted events are decoded
        try:
            event = decode_event(payload)
        except EventValidationError:
            return
        current = event.data.current
        entry: dict[str, Any] = {"entity_type": event.entity_type, "entity_id": event.entity_id}
        title = current.get("title") or current.get("name")
        if title:
            entry["title"] = title
        if "completion_milestone" in current:
            entry["completion_milestone"] = current["completion_milestone"]
        self.highlights[name].append(entry)

    def summary(self, start: datetime, end: datetime) -> dict[str, Any]:
        by_entity: Counter[str] = Counter()
        for event_type, n in self.counts.items():
            by_entity[event_type.partition(".")[0]] += n
        return {
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "total": sum(self.counts.values()),
            "counts": dict(self.counts.most_common()),
            "by_entity": dict(by_entity.most_common()),
            "highlights": {name: list(entries) for name, entries in self.highlights.items()},
        }


# -- the scheduler -------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler(FollowingProcessor):
    """Publishes the time-based events of the catalog, each once.

    ``clock`` gives the current time (tests pass a controllable one). Use
    ``run(stop)`` in a process; ``catch_up()`` and ``tick()`` drive it by hand::

        async with EventPublisher() as publisher:
            await Scheduler(publisher).run(stop)

    ``start_seq`` is where a scheduler with no saved state starts reading (1: the
    whole stream); ``reports=False`` leaves out the daily digest and weekly report.
    """

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        settings: SchedulerSettings | None = None,
        clock: Callable[[], datetime] = _utcnow,
        bucket: str = SCHEDULER_BUCKET,
        start_seq: int = 1,
        reports: bool = True,
        tick_interval: float = 1.0,
    ) -> None:
        self.publisher = publisher
        self.settings = settings or SchedulerSettings()
        self.clock = clock
        self.bucket = bucket
        self.start_seq = start_seq
        self.reports = reports
        self.tick_interval = tick_interval
        self._kv: KeyValue | None = None
        self._items: RecordStore[ScheduledItem] | None = None
        self._follower: StreamFollower | None = None
        self._fired: set[uuid.UUID] = set()
        self._epoch: datetime | None = None
        self._applied = 0

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open the bucket, load what is known, and start following the stream after the saved cursor."""
        if self._follower is not None:
            return
        js = self.publisher.js
        kv = await open_bucket(js, self.publisher.settings, self.bucket, "turbohooks: what the scheduler knows")
        self._kv = kv
        self._items = RecordStore(kv, ScheduledItem)
        await self._items.load("item.>")
        await self._load_markers()
        self._epoch = await self._read_epoch()
        cursor = await self._items.read_cursor()
        self._applied = cursor if cursor else self.start_seq - 1
        subjects = [event_subject(t) for t in _LEARNED_FROM]
        self._follower = StreamFollower(js, self.publisher.settings.stream_name, subjects)
        await self._follower.open(start_seq=self._applied + 1)

    async def _load_markers(self) -> None:
        assert self._kv is not None
        watcher = await self._kv.watch("fired.>", meta_only=True)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None:
                    self._fired.add(uuid.UUID(hex=entry.key.removeprefix("fired.")))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def _read_epoch(self) -> datetime:
        """When this state was created: no report is sent for a time before it."""
        assert self._kv is not None
        with contextlib.suppress(KeyNotFoundError):
            entry = await self._kv.get(_EPOCH)
            return datetime.fromisoformat((entry.value or b"").decode())
        now = self.clock()
        with contextlib.suppress(KeyWrongLastSequenceError):  # another scheduler created it first: read theirs
            await self._kv.create(_EPOCH, now.isoformat().encode())
            return now
        entry = await self._kv.get(_EPOCH)
        return datetime.fromisoformat((entry.value or b"").decode())

    # -- learning --------------------------------------------------------------------

    @property
    def items(self) -> dict[str, ScheduledItem]:
        """What the scheduler tracks, by KV key."""
        return self._items.cached() if self._items is not None else {}

    async def catch_up(self) -> int:
        """Learn from every event stored so far; how many were read."""
        await self.open()
        assert self._follower is not None
        read = 0
        async for msgs in self._follower.read_all():
            await self._learn(msgs)
            read += len(msgs)
        return read

    async def _learn(self, msgs: list[Msg]) -> None:
        assert self._items is not None
        for seq, event in decode_messages(msgs):
            key = kv_key(f"item.{event.entity_type}", event.entity_id)

            async def apply(item: ScheduledItem | None, seq: int = seq, event: Event = event) -> ScheduledItem | None:
                return learn(item, event, seq)

            await self._items.change(key, apply)
            self._applied = seq
        if msgs:
            await self._items.write_cursor(self._applied)

    # -- firing ----------------------------------------------------------------------

    async def tick(self) -> list[Event]:
        """Publish everything due at ``clock()`` that was not published yet; the events published."""
        await self.open()
        now = self.clock()
        published: list[Event] = []
        for item in list(self.items.values()):
            due = due_now(item, now, self.settings)
            if due is not None and await self._not_fired(due.event_id):
                published.append(await self._publish(_due_event(item, due, now)))
        if self.reports:
            published.extend(await self._reports(now))
        return published

    async def _not_fired(self, event_id: uuid.UUID) -> bool:
        """Whether no scheduler published ``event_id`` yet (the marker outlives the duplicate window)."""
        assert self._kv is not None
        if event_id in self._fired:
            return False
        try:
            await self._kv.get(f"fired.{event_id.hex}")
        except KeyNotFoundError:
            return True
        self._fired.add(event_id)
        return False

    async def _publish(self, event: Event) -> Event:
        assert self._kv is not None
        await self.publisher.publish(event)
        # After the publish: a crash in between re-publishes the same id, which the duplicate window drops.
        await self._kv.put(f"fired.{event.event_id.hex}", event.event_type.encode())
        self._fired.add(event.event_id)
        return event

    async def _reports(self, now: datetime) -> list[Event]:
        assert self._epoch is not None
        published: list[Event] = []
        at = self.settings.digest_time
        for event_type, occurrence, period in (
            ("system.daily_digest", last_daily(now, at), timedelta(days=1)),
            ("system.weekly_report", last_weekly(now, at, self.settings.weekly_report_day), timedelta(days=7)),
        ):
            if occurrence < self._epoch:
                continue
            event_id = uuid.uuid5(_NAMESPACE, f"{event_type}|{occurrence.isoformat()}")
            if not await self._not_fired(event_id):
                continue
            summary = await self._summarize(occurrence - period, occurrence)
            name = event_type.partition(".")[2]
            event = build_event(
                event_type=event_type,
                entity_id=f"{name}-{occurrence.date().isoformat()}",
                data=EventData(current=summary),
                actor=_ACTOR,
                event_id=event_id,
                timestamp=now,
            )
            published.append(await self._publish(event))
        return published

    async def _summarize(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Counts and highlights of the events stored in ``[start, end)``."""
        follower = StreamFollower(self.publisher.js, self.publisher.settings.stream_name, ["turbo.>"])
        await follower.open(start_seq=0, start_time=start)
        tally = _Tally()
        try:
            async for msgs in follower.read_all():
                for msg in msgs:
                    if msg.metadata.timestamp >= end:
                        return tally.summary(start, end)
                    tally.add(msg.subject, msg.data)
        finally:
            await follower.close()
        return tally.summary(start, end)

    # -- running ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Learn from the stream and tick every ``tick_interval`` seconds until ``stop`` is set."""
        await self.open()
        assert self._follower is not None
        stopper = asyncio.create_task(stop.wait())
        next_tick = 0.0
        try:
            while not stop.is_set():
                msgs = await self._follower.fetch_or_stop(stopper, self.tick_interval)
                if msgs is None:
                    break
                try:
                    await self._learn(msgs)
                    # Ticks wait until the scheduler has caught up: stale due dates must not fire.
                    if (not msgs or msgs[-1].metadata.num_pending == 0) and time.monotonic() >= next_tick:
                        await self.tick()
                        next_tick = time.monotonic() + self.tick_interval
                except (PublishError, *NATS_ERRORS) as exc:
                    _log.warning("scheduler: %s; starting again after seq %d", exc, self._applied)
                    await self._follower.restart(self._applied + 1, stop)
        finally:
            stopper.cancel()
            await self.close()


def _due_event(item: ScheduledItem, due: Due, now: datetime) -> Event:
    assert item.at is not None
    field = _TIME_FIELD[item.kind]
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
        actor=_ACTOR,
        data=EventData(current=current),
        context=context,
        causation_id=item.cause,
    )
