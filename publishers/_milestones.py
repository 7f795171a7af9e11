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

This module also holds what the scheduler shares with it: :class:`StreamFollower`
(read a stream in order from a sequence) and :class:`RecordStore` (typed KV
records with compare-and-set).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from streams import (
    Event,
    EventContext,
    EventData,
    EventValidationError,
    PublishError,
    Settings,
    TurbohooksError,
    decode_event,
    event_subject,
)

from ._changes import CLOSED_STATUS
from ._publisher import EventPublisher

__all__ = (
    "MILESTONES_BUCKET",
    "MilestoneProcessor",
    "RecordStore",
    "StreamFollower",
    "kv_key",
    "open_bucket",
)

_log = logging.getLogger("turbohooks.milestones")

MILESTONES_BUCKET: Final = "turbohooks_milestones"
_BATCH: Final = 256
_FETCH_TIMEOUT: Final = 1.0
_CAS_ATTEMPTS: Final = 16
_NATS_ERRORS: Final = (NatsError, TimeoutError, OSError)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CURSOR: Final = "cursor"

_ISSUE_EVENTS: Final = (
    "issue.created",
    "issue.updated",
    "issue.status_changed",
    "issue.closed",
    "issue.reopened",
    "issue.linked_to_milestone",
)
_MILESTONE_EVENTS: Final = ("milestone.created", "milestone.updated")


# -- shared helpers ----------------------------------------------------------------


def kv_key(kind: str, entity_id: str) -> str:
    """A KV key for an entity; ids with characters KV keys refuse are base64url-encoded after ``=``."""
    if _SAFE_KEY.match(entity_id):
        return f"{kind}.{entity_id}"
    return f"{kind}.={base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip('=')}"


async def open_bucket(js: JetStreamContext, settings: Settings, name: str, description: str) -> KeyValue:
    """Open a KV bucket, creating it when missing (creating an identical one twice is harmless)."""
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(
            js_api.KeyValueConfig(
                bucket=name,
                description=description,
                history=1,
                storage=js_api.StorageType.FILE,
                replicas=settings.stream_replicas,
            )
        )


T = TypeVar("T", bound=msgspec.Struct)


class RecordStore(Generic[T]):
    """Typed records in a KV bucket, cached in memory, changed with compare-and-set."""

    def __init__(self, kv: KeyValue, kind: type[T]) -> None:
        self.kv = kv
        self._decoder = msgspec.json.Decoder(kind)
        self._encoder = msgspec.json.Encoder()
        self._cache: dict[str, tuple[T, int]] = {}
        self._complete = False
        self._stale: set[str] = set()

    async def _entry(self, key: str) -> tuple[T | None, int]:
        if key in self._cache:
            return self._cache[key]
        if self._complete and key not in self._stale:
            return None, 0  # everything was loaded: a key not in the cache does not exist
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, 0
        finally:
            self._stale.discard(key)
        if not entry.value or entry.revision is None:
            return None, 0
        record = self._decoder.decode(entry.value)
        self._cache[key] = (record, entry.revision)
        return record, entry.revision

    async def get(self, key: str) -> T | None:
        """The record at ``key``, or None."""
        return (await self._entry(key))[0]

    def cached(self) -> dict[str, T]:
        """Every record this store has read or written, by key."""
        return {key: record for key, (record, _) in self._cache.items()}

    async def load(self, pattern: str) -> int:
        """Read every record whose key matches ``pattern`` (``item.>``) into the cache; how many.

        Afterwards a key missing from the cache is taken as absent without asking
        the bucket; a write that finds otherwise (another writer) reads it then.
        """
        watcher = await self.kv.watch(pattern)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None and entry.value and entry.revision is not None:
                    self._cache[entry.key] = (self._decoder.decode(entry.value), entry.revision)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        self._complete = True
        return len(self._cache)

    async def change(self, key: str, fn: Callable[[T | None], Awaitable[T | None]]) -> T | None:
        """Write ``fn(record)`` unless it returns None or the same record; retried when another writer won."""
        for _ in range(_CAS_ATTEMPTS):
            record, revision = await self._entry(key)
            new = await fn(record)
            if new is None or new is record:
                return record
            payload = self._encoder.encode(new)
            try:
                if revision:
                    revision = await self.kv.update(key, payload, last=revision)
                else:
                    revision = await self.kv.create(key, payload)
            except KeyWrongLastSequenceError:
                # Another writer was first: read its record and decide again.
                self._cache.pop(key, None)
                self._stale.add(key)
                continue
            self._cache[key] = (new, revision)
            return new
        raise TurbohooksError(f"turbohooks: KV record {key} kept changing under {_CAS_ATTEMPTS} writes")

    async def read_cursor(self) -> int:
        """The last stream sequence applied (0: none)."""
        try:
            entry = await self.kv.get(_CURSOR)
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def write_cursor(self, seq: int) -> None:
        """Remember that every event up to ``seq`` was applied (written after the records)."""
        await self.kv.put(_CURSOR, str(seq).encode())


class StreamFollower:
    """Reads some subjects of a stream in order, from a sequence or a time on.

    An ephemeral pull consumer without acks: it never redelivers nor reorders,
    and the reader keeps its own cursor. When the consumer is lost (a long
    disconnect), it is created again after the last sequence read.
    """

    def __init__(self, js: JetStreamContext, stream: str, subjects: list[str]) -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects
        self.last_seq = 0
        """The sequence of the last message returned."""
        self._start_time: datetime | None = None
        self._psub: JetStreamContext.PullSubscription | None = None

    async def open(self, *, start_seq: int = 1, start_time: datetime | None = None) -> None:
        """Start reading at ``start_seq`` (or at the first message stored at or after ``start_time``)."""
        self.last_seq = max(start_seq, 1) - 1
        self._start_time = start_time
        await self._subscribe()

    async def _subscribe(self) -> None:
        config = js_api.ConsumerConfig(
            filter_subjects=self.subjects,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=300.0,
            mem_storage=True,
            num_replicas=1,
        )
        if self.last_seq > 0:
            config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.last_seq + 1
        elif self._start_time is not None:
            config.deliver_policy = js_api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._start_time
        self._psub = await self.js.pull_subscribe(self.subjects[0], stream=self.stream, config=config)

    async def restart(self, start_seq: int, stop: asyncio.Event) -> None:
        """Start reading again at ``start_seq``, waiting out a NATS outage (or until ``stop``)."""
        await self.close()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            try:
                await self.open(start_seq=start_seq)
                return
            except _NATS_ERRORS as exc:
                _log.info("follower: cannot subscribe yet (%s)", exc)

    async def pending(self) -> int:
        """Messages stored and not yet read."""
        if self._psub is None:
            await self._subscribe()
        assert self._psub is not None
        info = await self._psub.consumer_info()
        return int(info.num_pending or 0) + self._psub.pending_msgs

    async def read_all(self) -> AsyncIterator[list[Msg]]:
        """Batches of everything stored when called, then stop: what "catching up" reads."""
        target = int((await self.js.stream_info(self.stream)).state.last_seq)
        while not await self._caught_up_to(target):
            msgs = await self.fetch()
            if msgs:
                yield msgs

    async def _caught_up_to(self, target: int) -> bool:
        """Whether every message of our subjects stored up to ``target`` was read.

        Asked of the stream, not only of the consumer: a consumer learns of a new
        message a moment after its publish was acknowledged.
        """
        if self.last_seq >= target:
            return True
        if await self.pending():
            return False
        for subject in self.subjects:
            try:
                msg = await self.js.get_msg(self.stream, seq=self.last_seq + 1, subject=subject, next=True)
            except JsNotFoundError:
                continue
            if msg.seq is not None and msg.seq <= target:
                return False
        return True

    async def fetch(self, batch: int = _BATCH, timeout: float = _FETCH_TIMEOUT) -> list[Msg]:
        """Up to ``batch`` messages in stream order; ``[]`` when none came within ``timeout``."""
        if self._psub is None:
            # The consumer was lost (inactive too long, server restarted): start again where we were.
            try:
                await self._subscribe()
            except _NATS_ERRORS as exc:
                _log.info("follower: cannot subscribe yet (%s)", exc)
                await asyncio.sleep(min(timeout, 1.0))
                return []
        assert self._psub is not None
        try:
            msgs = await self._psub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return []
        except NatsError as exc:
            _log.info("follower: %s; re-creating the consumer after seq %d", exc, self.last_seq)
            await self.close()
            return []
        if msgs:
            self.last_seq = msgs[-1].metadata.sequence.stream
        return msgs

    async def fetch_or_stop(self, stopper: asyncio.Task[Any], timeout: float) -> list[Msg] | None:
        """:meth:`fetch`, or None as soon as ``stopper`` completes."""
        fetch = asyncio.create_task(self.fetch(timeout=timeout))
        done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if fetch not in done:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_NATS_ERRORS):
                await fetch
            return None
        return fetch.result()

    async def close(self) -> None:
        """Delete the consumer (the server also would, after five idle minutes)."""
        if self._psub is not None:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._psub.unsubscribe()
            self._psub = None


def decode_messages(msgs: list[Msg]) -> list[tuple[int, Event]]:
    """``(stream sequence, event)`` of each message; undecodable ones are logged and skipped."""
    events: list[tuple[int, Event]] = []
    for msg in msgs:
        try:
            events.append((msg.metadata.sequence.stream, decode_event(msg.data)))
        except EventValidationError as exc:
            _log.error("skipping undecodable event at seq %d: %s", msg.metadata.sequence.stream, exc)
    return events


# -- the milestone processor ---------------------------------------------------------


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


class MilestoneProcessor:
    """Publishes ``milestone.completed`` when the last open issue of a milestone closes.

    ``start_seq`` is where a processor with no saved state starts reading (1: the
    whole stream). Use ``run(stop)`` in a process, or ``catch_up()`` to apply
    everything stored so far (tests, one-shot jobs)::

        async with EventPublisher() as publisher:
            await MilestoneProcessor(publisher).run(stop)
    """

    def __init__(self, publisher: EventPublisher, *, bucket: str = MILESTONES_BUCKET, start_seq: int = 1) -> None:
        self.publisher = publisher
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

    async def close(self) -> None:
        """Stop following the stream."""
        if self._follower is not None:
            await self._follower.close()
            self._follower = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def catch_up(self) -> list[Event]:
        """Apply every event stored so far; the ``milestone.completed`` events published."""
        await self.open()
        assert self._follower is not None
        published: list[Event] = []
        async for msgs in self._follower.read_all():
            published.extend(await self._apply(msgs))
        return published

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the stream until ``stop`` is set; through NATS outages, from the last event applied."""
        await self.open()
        assert self._follower is not None
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                msgs = await self._follower.fetch_or_stop(stopper, _FETCH_TIMEOUT)
                if msgs is None:
                    break
                try:
                    await self._apply(msgs)
                except (PublishError, *_NATS_ERRORS) as exc:
                    _log.warning("milestones: %s; starting again after seq %d", exc, self._applied)
                    await self._follower.restart(self._applied + 1, stop)
        finally:
            stopper.cancel()
            await self.close()

    async def _apply(self, msgs: list[Msg]) -> list[Event]:
        assert self._links is not None
        published: list[Event] = []
        for seq, event in decode_messages(msgs):
            if event.entity_type == "issue":
                published.extend(await self._issue(seq, event))
            elif event.event_type in _MILESTONE_EVENTS:
                await self._milestone_state(seq, event)
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


async def _return(value: T) -> T:
    return value
