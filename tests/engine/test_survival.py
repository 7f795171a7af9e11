"""Every long-running loop survives any one bad message, and keeps serving good messages published after it.

Each loop is fed a fixed list of nasty inputs (random bytes, deep JSON, huge
JSON, wrong shapes, envelopes that decode but carry odd values), then a
sentinel: the loop must act on the sentinel (observed, not slept for) and still
be running.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from nats.js.errors import NotFoundError

from consumers.engine._redeliver import RedeliveryRequest, redeliver_subject
from publishers import EventPublisher, MilestoneProcessor, Scheduler
from publishers._changes import emit_change
from streams import Settings, build_event, encode_event
from tests.support import Receiver, Running, wait_for

from .test_poison import dead_letters


def _envelope(event_type: str, entity_type: str, data: object) -> bytes:
    _entity, action = event_type.split(".")
    return msgspec.json.encode(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "timestamp": "2024-05-01T12:00:00Z",
            "entity_type": entity_type,
            "entity_id": "nasty",
            "action": action,
            "data": data,
        }
    )


def nasty_inputs(max_payload: int, event_type: str = "issue.updated") -> list[bytes]:
    """Bytes no consumer should die of; none of them is a deliverable event of ``event_type``'s subject."""
    rng = random.Random(16)
    deep_array = b"[" * 50_000 + b"]" * 50_000
    deep_object = b'{"a":' * 3_000 + b"1" + b"}" * 3_000
    inputs = [
        b"",
        b"null",
        b"[]",
        b"42",
        b'"a string"',
        b"{",
        b"\xff\xfe\xfd",
        b"\x00" * 64,
        deep_array,
        deep_object,
        _envelope(event_type, event_type.split(".")[0], {"current": {"x": msgspec.Raw(deep_array)}}),
        _envelope(event_type, event_type.split(".")[0], []),
        _envelope(event_type, event_type.split(".")[0], {"current": [], "changes": {}}),
        _envelope("issue.exploded", "issue", {}),
        _envelope("project.created", "project", {}),  # a type other than the subject's
        b'{"event_id": 1, "event_type": ["x"], "timestamp": {}, "data": "no"}',
        b'{"event_id": "' + str(uuid.uuid4()).encode() + b'", "n": 1e400}',
        b'{"pad": "' + b"x" * (max_payload - 1024) + b'"}',  # huge, just under the server's cap
    ]
    inputs += [rng.randbytes(rng.randint(1, 4096)) for _ in range(24)]
    return inputs


def odd_but_valid(entity_id: str) -> list[bytes]:
    """Envelopes that decode: fields a processor reads hold values of the wrong kind."""
    events = []
    for current in (
        {"status": [], "due_date": {"not": "a date"}, "milestone_id": {}},
        {"status": {"a": 1}, "due_date": 12, "milestone_id": ["m"]},
        {"status": None, "due_date": "2024-99-99", "milestone_id": 3.5},
        {"due_date": "9999-12-31T23:59:59+23:59", "start_time": [1]},
        {"status": "closed" * 1000, "due_date": "0001-01-01"},
    ):
        for event_type in ("issue.updated", "issue.created", "milestone.updated", "calendar.event_created"):
            event = build_event(
                event_type=event_type, entity_id=entity_id, data={"current": current, "changes": ["status"]}
            )
            events.append(encode_event(event))
    return events


async def test_the_subscription_loop_survives_every_nasty_message(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/survive-{unique}"
    sub = await running.subscribe(name=f"survive-{unique}", url=receiver.endpoint(path), event_types=["issue.*"])
    js = running.engine.js
    bad = nasty_inputs(running.engine.nc.max_payload)
    for payload in bad:
        await js.publish("turbo.issue.updated", payload)
    for payload in odd_but_valid(unique):
        if b'"issue.' in payload[:120]:
            await js.publish("turbo." + msgspec.json.decode(payload)["event_type"], payload)
    sentinel = build_event(event_type="issue.created", entity_id=unique)
    await js.publish(sentinel.subject, encode_event(sentinel))

    await wait_for(
        lambda: any(r.event_id == str(sentinel.event_id) for r in receiver.at(path)), timeout=30, what="the sentinel"
    )
    assert sub.id in running.workers[0].running and not any(t.done() for t in running.tasks)

    async def all_buried() -> bool:
        return len(await dead_letters(js, sub.id)) >= len(bad)

    await wait_for(all_buried, timeout=30, what="a dead letter per nasty message")
    assert len(await dead_letters(js, sub.id)) == len(bad)


async def test_the_redelivery_loop_survives_every_nasty_request(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/redeliver-{unique}"
    sub = await running.subscribe(name=f"redeliver-{unique}", url=receiver.endpoint(path), event_types=["tag.*"])
    js = running.engine.js
    subject = redeliver_subject("webhook", sub.id)
    garbage = [
        *nasty_inputs(running.engine.nc.max_payload),
        b'{"subscription_id": "' + str(sub.id).encode() + b'", "trigger": "manual", "event": ' + b"[" * 5000 + b"]"
        b"" + b"]" * 4999 + b"}",
        msgspec.json.encode(
            RedeliveryRequest(subscription_id=sub.id, trigger="manual", event=msgspec.Raw(b'{"not": "an event"}'))
        ),
    ]
    for payload in garbage:
        await js.publish(subject, payload)
    sentinel = build_event(event_type="tag.created", entity_id=unique)
    request = RedeliveryRequest(subscription_id=sub.id, trigger="manual", event=msgspec.Raw(encode_event(sentinel)))
    await js.publish(subject, msgspec.json.encode(request))
    await wait_for(lambda: len(receiver.at(path)) == 1, timeout=30, what="the sentinel redelivery")
    assert receiver.at(path)[0].event_id == str(sentinel.event_id)
    assert not any(t.done() for t in running.tasks)


async def _publish_nasty(publisher: EventPublisher, entity_id: str, *, odd: bool = True) -> None:
    js = publisher.js
    for payload in nasty_inputs(publisher._nc.max_payload if publisher._nc else 1 << 20):
        for subject in ("turbo.issue.updated", "turbo.milestone.updated", "turbo.calendar.event_created"):
            await js.publish(subject, payload)
    for payload in odd_but_valid(entity_id) if odd else []:
        await js.publish("turbo." + msgspec.json.decode(payload)["event_type"], payload)


async def _own_start(publisher: EventPublisher, settings: Settings) -> tuple[str, int]:
    """A KV bucket of this test alone, and the stream sequence its messages start at (the stream is shared)."""
    last = int((await publisher.js.stream_info(settings.stream_name)).state.last_seq)
    return f"test_{uuid.uuid4().hex[:12]}", last + 1


async def _stored(publisher: EventPublisher, settings: Settings, start: int, event_type: str, entity_id: str) -> bool:
    from tests.generators.conftest import stored_events

    events = await stored_events(publisher.js, settings, start, entity_ids={entity_id})
    return any(e.event_type == event_type for e in events)


async def test_the_scheduler_survives_every_nasty_message(settings: Settings, js: object, unique: str) -> None:
    await _scheduler_survives(settings, unique, odd=True)


async def test_the_scheduler_survives_undecodable_messages(settings: Settings, js: object, unique: str) -> None:
    """Deep JSON (2,000+ levels) killed it with RecursionError, and `turbohooks up` with it, on every restart."""
    await _scheduler_survives(settings, unique, odd=False)


async def _scheduler_survives(settings: Settings, unique: str, *, odd: bool) -> None:
    async with EventPublisher(settings, name="survival") as publisher:
        stop = asyncio.Event()
        bucket, start = await _own_start(publisher, settings)
        scheduler = Scheduler(publisher, reports=False, tick_interval=0.1, bucket=bucket, start_seq=start)
        task = asyncio.create_task(scheduler.run(stop))
        try:
            await _publish_nasty(publisher, f"odd-{unique}", odd=odd)
            yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            await emit_change(publisher, "issue", unique, previous=None, current={"due_date": yesterday})

            async def overdue() -> bool:
                assert not task.done(), f"the scheduler died: {task.exception()!r}"
                return await _stored(publisher, settings, start, "issue.overdue", unique)

            await wait_for(overdue, timeout=30, what="the sentinel's issue.overdue")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
            with contextlib.suppress(NotFoundError):
                await publisher.js.delete_key_value(bucket)


async def test_the_milestone_processor_survives_every_nasty_message(
    settings: Settings, js: object, unique: str
) -> None:
    async with EventPublisher(settings, name="survival") as publisher:
        stop = asyncio.Event()
        bucket, start = await _own_start(publisher, settings)
        task = asyncio.create_task(MilestoneProcessor(publisher, bucket=bucket, start_seq=start).run(stop))
        try:
            await _publish_nasty(publisher, f"odd-{unique}")
            milestone = f"m-{unique}"
            await emit_change(publisher, "issue", unique, previous=None, current={"milestone_id": milestone})
            await emit_change(publisher, "issue", unique, previous={"status": "open"}, current={"status": "closed"})

            async def completed() -> bool:
                assert not task.done(), f"the milestone processor died: {task.exception()!r}"
                return await _stored(publisher, settings, start, "milestone.completed", milestone)

            await wait_for(completed, timeout=30, what="the sentinel's milestone.completed")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
            with contextlib.suppress(NotFoundError):
                await publisher.js.delete_key_value(bucket)
