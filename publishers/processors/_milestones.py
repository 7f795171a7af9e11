"""``milestone.completed``, known from the stream: the processor that follows issue events.

The processor reads the events stream in order and keeps, in a NATS KV bucket,
which issues each milestone has and whether each is closed. When an event closes
the last open issue of a milestone, it publishes ``milestone.completed`` (caused
by that event). A milestone completes again only after one of its issues was
reopened or added open.

Where an issue belongs: ``milestone_id`` of the event's ``current`` state, else
the event's ``context.milestone_id``, else what the processor knew. Whether it is
closed: ``issue.closed`` / ``issue.reopened``, else ``status == "closed"``.

Replays never publish twice: every record remembers the last stream sequence
applied to it (an older event is skipped), writes are compare-and-set (two
processors may run), and the event's id is derived from the id of the event
that closed the milestone, so JetStream's duplicate window drops a re-publish.

It follows the stream with :class:`~publishers._follow.StreamFollower` and keeps
its records in a :class:`~publishers._follow.RecordStore`, as the scheduler does.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg

from streams import (
    Event,
    EventContext,
    EventData,
    event_subject,
    open_bucket,
)

from .._publisher import EventPublisher
from .._rules import CLOSED_STATUS
from ._base import FollowingProcessor
from ._follow import BAD_EVENT_ERRORS, RecordStore, StreamFollower, decode_messages, kv_key
from ._metrics import SchedulerMetrics

__all__ = ("MILESTONES_BUCKET", "MilestoneProcessor", "completion_event_id")

_log = logging.getLogger("turbohooks.milestones")

MILESTONES_BUCKET: Final = "turbohooks_milestones"

_ISSUE_EVENTS: Final = (
    "issue.created",
    "issue.updated",
    "issue.status_changed",
    "issue.closed",
    "issue.reopened",
    "issue.linked_to_milestone",
)
_MILESTONE_EVENTS: Final = ("milestone.created", "milestone.updated")


class _IssueLink(msgspec.Struct, frozen=True, kw_only=True):
    """Which milestone an issue belongs to, as of stream sequence ``seq``."""

    issue_id: str
    milestone_id: str | None = None
    seq: int = 0


class _Milestone(msgspec.Struct, frozen=True, kw_only=True):
    """A milestone's issues (id → closed) and whether its completion was announced."""

    milestone_id: str
    state: dict[str, Any] = msgspec.field(default_factory=dict)
    """Its last known state (from ``milestone.created`` / ``updated``), for the event's payload."""
    issues: dict[str, bool] = msgspec.field(default_factory=dict)
    completed: bool = False
    seq: int = 0


_MISSING: Final = object()


def _membership(event: Event) -> object:
    """The milestone the event puts the issue in: an id, None (in none), or ``_MISSING`` (unknown)."""
    current = event.data.current
    if "milestone_id" in current:
        value = current["milestone_id"]
        return str(value) if value not in (None, "") else None
    if event.context.milestone_id:
        return event.context.milestone_id
    return _MISSING


def _closed(event: Event) -> bool | None:
    """Whether the event says the issue is closed (None: it does not say)."""
    if event.event_type == "issue.closed":
        return True
    if event.event_type == "issue.reopened":
        return False
    if "status" in event.data.current:
        return bool(event.data.current["status"] == CLOSED_STATUS)
    return None


def _was_closed(event: Event) -> bool | None:
    """Whether the issue was closed before the event, when the event says so."""
    if event.event_type == "issue.closed":
        return False
    previous = event.data.previous
    if previous is not None and "status" in previous:
        return bool(previous["status"] == CLOSED_STATUS)
    return None


def completion_event_id(trigger: uuid.UUID, milestone_id: str) -> uuid.UUID:
    """The id of the ``milestone.completed`` caused by ``trigger``: the same on every replay."""
    return uuid.uuid5(trigger, f"milestone.completed:{milestone_id}")


class MilestoneProcessor(FollowingProcessor):
    """Publishes ``milestone.completed`` when the last open issue of a milestone closes.

    ``start_seq`` is where a processor with no saved state starts reading (1: the
    whole stream). Use ``run(stop)`` in a process, or ``catch_up()`` to apply
    everything stored so far (tests, one-shot jobs)::

        async with EventPublisher() as publisher:
            await MilestoneProcessor(publisher).run(stop)
    """

    name = "milestones"

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        bucket: str = MILESTONES_BUCKET,
        start_seq: int = 1,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics or SchedulerMetrics()
        self.bucket = bucket
        self.start_seq = start_seq
        self._links: RecordStore[_IssueLink] | None = None
        self._milestones: RecordStore[_Milestone] | None = None
        self._follower: StreamFollower | None = None
        self._applied = 0

    async def open(self) -> None:
        """Open the KV bucket and start following the stream after the saved cursor."""
        if self._follower is not None:
            return
        js = self.publisher.js
        settings = self.publisher.settings
        kv = await open_bucket(js, settings, self.bucket, "turbohooks: milestones and their issues, from the stream")
        self._links = RecordStore(kv, _IssueLink)
        self._milestones = RecordStore(kv, _Milestone)
        await self._links.load("issue.>")
        await self._milestones.load("milestone.>")
        cursor = await self._links.read_cursor()
        self._applied = cursor if cursor else self.start_seq - 1
        subjects = [event_subject(t) for t in (*_ISSUE_EVENTS, *_MILESTONE_EVENTS)]
        self._follower = StreamFollower(js, settings.stream_name, subjects)
        await self._follower.open(start_seq=self._applied + 1)

    async def catch_up(self) -> list[Event]:
        """Apply every event stored so far; the ``milestone.completed`` events published."""
        await self.open()
        assert self._follower is not None
        published: list[Event] = []
        async for msgs in self._follower.read_all():
            published.extend(await self._apply(msgs))
        return published

    async def step(self, msgs: list[Msg]) -> None:
        await self._apply(msgs)

    async def _apply(self, msgs: list[Msg]) -> list[Event]:
        assert self._links is not None
        published: list[Event] = []
        for seq, event in decode_messages(msgs):
            try:
                if event.entity_type == "issue":
                    published.extend(await self._issue(seq, event))
                elif event.event_type in _MILESTONE_EVENTS:
                    await self._milestone_state(seq, event)
            except BAD_EVENT_ERRORS as exc:
                _log.error("milestones: skipping event %s at seq %d: %r", event.event_id, seq, exc)
            self._applied = seq
        if msgs:
            await self._links.write_cursor(self._applied)
        return published

    async def _milestone_state(self, seq: int, event: Event) -> None:
        assert self._milestones is not None
        milestone_id = event.entity_id

        async def learn(record: _Milestone | None) -> _Milestone | None:
            if record is not None and (record.seq >= seq or record.state == event.data.current):
                return record
            base = record or _Milestone(milestone_id=milestone_id)
            return msgspec.structs.replace(base, state=dict(event.data.current), seq=seq)

        await self._milestones.change(kv_key("milestone", milestone_id), learn)

    async def _issue(self, seq: int, event: Event) -> list[Event]:
        assert self._links is not None and self._milestones is not None
        issue_id = event.entity_id
        link_key = kv_key("issue", issue_id)
        link = await self._links.get(link_key) or _IssueLink(issue_id=issue_id)
        if link.seq >= seq:
            return []  # a replay of an event already applied
        target = _membership(event)
        milestone_id = link.milestone_id if target is _MISSING else target
        assert milestone_id is None or isinstance(milestone_id, str)
        published: list[Event] = []

        if link.milestone_id and link.milestone_id != milestone_id:
            await self._milestones.change(
                kv_key("milestone", link.milestone_id), lambda m: self._without(m, issue_id, seq)
            )
        if milestone_id is not None:
            await self._milestones.change(
                kv_key("milestone", milestone_id),
                lambda m: self._with(m, milestone_id, issue_id, seq, event, published),
            )
        if milestone_id != link.milestone_id:
            # Written last: a crash before this line replays the event, and the milestone records skip it.
            new_link = _IssueLink(issue_id=issue_id, milestone_id=milestone_id, seq=seq)
            await self._links.change(link_key, lambda _: _return(new_link))
        return published

    @staticmethod
    async def _without(record: _Milestone | None, issue_id: str, seq: int) -> _Milestone | None:
        if record is None or record.seq >= seq or issue_id not in record.issues:
            return record
        issues = {k: v for k, v in record.issues.items() if k != issue_id}
        return msgspec.structs.replace(record, issues=issues, seq=seq)

    async def _with(
        self,
        record: _Milestone | None,
        milestone_id: str,
        issue_id: str,
        seq: int,
        event: Event,
        published: list[Event],
    ) -> _Milestone | None:
        record = record or _Milestone(milestone_id=milestone_id)
        if record.seq >= seq:
            return record
        before = record.issues.get(issue_id)
        said = _closed(event)
        closed = said if said is not None else bool(before)
        if before is None:
            before = _was_closed(event)
        issues = {**record.issues, issue_id: closed}
        completed = record.completed and all(issues.values())
        if closed and before is False and all(issues.values()) and not record.completed:
            completion = self._completion(milestone_id, record, issues, event)
            # Published before the record says so: a crash in between re-publishes the same id.
            await self.publisher.publish(completion)
            self.metrics.event(self.name, completion.event_type)
            published.append(completion)
            completed = True
        if issues == record.issues and completed == record.completed:
            return record
        return msgspec.structs.replace(record, issues=issues, completed=completed, seq=seq)

    @staticmethod
    def _completion(milestone_id: str, record: _Milestone, issues: dict[str, bool], trigger: Event) -> Event:
        project_id = trigger.context.project_id or record.state.get("project_id")
        return Event(
            event_id=completion_event_id(trigger.event_id, milestone_id),
            event_type="milestone.completed",
            timestamp=datetime.now(UTC),
            entity_type="milestone",
            entity_id=milestone_id,
            action="completed",
            actor=trigger.actor,
            data=EventData(
                current={
                    **record.state,
                    "issues_total": len(issues),
                    "issues_closed": sum(issues.values()),
                    "last_closed_issue_id": trigger.entity_id,
                },
                changes=["issues_closed"],
            ),
            context=EventContext(
                project_id=str(project_id) if project_id else None,
                milestone_id=milestone_id,
                issue_id=trigger.entity_id,
            ),
            causation_id=trigger.event_id,
        )


async def _return(value: _IssueLink) -> _IssueLink:
    return value
