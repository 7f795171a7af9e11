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

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from streams import Event, EventData, build_event, event_subject, open_bucket
from streams.settings import SchedulerSettings

from .._publisher import EventPublisher
from ._base import FollowingProcessor
from ._due import ACTOR, LEARNED_FROM, NAMESPACE, ScheduledItem, due_event, due_now, learn
from ._follow import BAD_EVENT_ERRORS, RecordStore, StreamFollower, decode_messages, kv_key
from ._metrics import SchedulerMetrics
from ._reports import last_daily, last_weekly, summarize

__all__ = ("SCHEDULER_BUCKET", "Scheduler")

_log = logging.getLogger("turbohooks.scheduler")

SCHEDULER_BUCKET: Final = "turbohooks_scheduler"
_EPOCH: Final = "epoch"


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

    name = "scheduler"

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
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics or SchedulerMetrics()
        self.settings = settings or SchedulerSettings()
        self.clock = clock
        self.bucket = bucket
        self.start_seq = start_seq
        self.reports = reports
        self.tick_interval = tick_interval
        self.fetch_timeout = tick_interval
        self._next_tick = 0.0
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
        subjects = [event_subject(t) for t in LEARNED_FROM]
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

            try:
                await self._items.change(key, apply)
            except BAD_EVENT_ERRORS as exc:
                _log.error("scheduler: skipping event %s at seq %d: %r", event.event_id, seq, exc)
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
                published.append(await self._publish(due_event(item, due, now)))
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
        self.metrics.event(self.name, event.event_type)
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
            event_id = uuid.uuid5(NAMESPACE, f"{event_type}|{occurrence.isoformat()}")
            if not await self._not_fired(event_id):
                continue
            summary = await summarize(
                self.publisher.js, self.publisher.settings.stream_name, occurrence - period, occurrence
            )
            name = event_type.partition(".")[2]
            event = build_event(
                event_type=event_type,
                entity_id=f"{name}-{occurrence.date().isoformat()}",
                data=EventData(current=summary),
                actor=ACTOR,
                event_id=event_id,
                timestamp=now,
            )
            published.append(await self._publish(event))
        return published

    # -- running ---------------------------------------------------------------------

    async def step(self, msgs: list[Msg]) -> None:
        """Learn from a batch, then tick once caught up (stale due dates must not fire), every ``tick_interval``."""
        await self._learn(msgs)
        if (not msgs or msgs[-1].metadata.num_pending == 0) and time.monotonic() >= self._next_tick:
            await self.tick()
            self._next_tick = time.monotonic() + self.tick_interval
