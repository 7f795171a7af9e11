"""milestone.completed from the stream: when the last open issue closes, once, also on replays."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from nats.js import JetStreamContext

from publishers import EventPublisher
from publishers._changes import emit_change
from publishers.processors import MilestoneProcessor, completion_event_id, kv_key
from streams import Event, Settings

from .conftest import eventually, stored_events


def _ids(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix}-{tag}-{i}" for i in range(n)]


async def _issue(publisher: EventPublisher, issue_id: str, milestone_id: str | None, status: str = "open") -> None:
    await emit_change(
        publisher,
        "issue",
        issue_id,
        previous=None,
        current={"title": f"Issue {issue_id}", "status": status, "milestone_id": milestone_id},
        context={"project_id": "p-1"},
    )


async def _status(publisher: EventPublisher, issue_id: str, milestone_id: str | None, old: str, new: str) -> Any:
    return await emit_change(
        publisher,
        "issue",
        issue_id,
        previous={"status": old, "milestone_id": milestone_id},
        current={"status": new, "milestone_id": milestone_id},
        actor={"type": "user", "name": "ada@example.com"},
        context={"project_id": "p-1"},
    )


async def _completions(js: JetStreamContext, settings: Settings, start_seq: int, milestone_id: str) -> list[Event]:
    events = await stored_events(js, settings, start_seq, entity_ids={milestone_id})
    return [e for e in events if e.event_type == "milestone.completed"]


async def test_completes_when_the_last_open_issue_closes(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, bucket: str, start_seq: int
) -> None:
    (milestone,) = _ids("m", 1)
    first, second = _ids("i", 2)
    await publisher.emit(event_type="milestone.created", entity_id=milestone, data={"current": {"name": "v1.0"}})
    await _issue(publisher, first, milestone)
    await _issue(publisher, second, milestone)
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as processor:
        await _status(publisher, first, milestone, "open", "closed")
        assert await processor.catch_up() == [], "one issue is still open"

        acks = await _status(publisher, second, milestone, "testing", "closed")
        (completed,) = await processor.catch_up()
    update_id = acks[0].event_id
    assert completed.event_type == "milestone.completed" and completed.entity_id == milestone
    assert completed.causation_id == update_id, "caused by the change that closed the last issue"
    assert completed.event_id == completion_event_id(update_id, milestone)
    assert completed.context.milestone_id == milestone and completed.context.project_id == "p-1"
    assert completed.actor.name == "ada@example.com"
    assert completed.data.current["name"] == "v1.0"
    assert (completed.data.current["issues_total"], completed.data.current["issues_closed"]) == (2, 2)
    assert [e.event_id for e in await _completions(js, settings, start_seq, milestone)] == [completed.event_id]


async def test_a_replay_never_publishes_twice(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, bucket: str, start_seq: int
) -> None:
    (milestone,) = _ids("m", 1)
    (issue,) = _ids("i", 1)
    await _issue(publisher, issue, milestone)
    await _status(publisher, issue, milestone, "open", "closed")
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as processor:
        assert len(await processor.catch_up()) == 1

    # The cursor lost: the same processor state reads everything again and knows it was applied.
    kv = await js.key_value(bucket)
    await kv.delete("cursor")
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as again:
        assert await again.catch_up() == []

    # A processor with no state at all publishes the same id, which JetStream stores once.
    async with MilestoneProcessor(publisher, bucket=f"{bucket}_fresh", start_seq=start_seq) as fresh:
        republished = await fresh.catch_up()
    await js.delete_key_value(f"{bucket}_fresh")
    assert len(republished) == 1
    assert len(await _completions(js, settings, start_seq, milestone)) == 1


async def test_reopening_and_closing_again_completes_again(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, bucket: str, start_seq: int
) -> None:
    (milestone,) = _ids("m", 1)
    (issue,) = _ids("i", 1)
    await _issue(publisher, issue, milestone)
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as processor:
        await _status(publisher, issue, milestone, "open", "closed")
        assert len(await processor.catch_up()) == 1
        await _status(publisher, issue, milestone, "closed", "open")
        assert await processor.catch_up() == []
        await _status(publisher, issue, milestone, "open", "closed")
        assert len(await processor.catch_up()) == 1
    assert len(await _completions(js, settings, start_seq, milestone)) == 2


async def test_near_misses_complete_nothing(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, bucket: str, start_seq: int
) -> None:
    milestone, other = _ids("m", 2)
    a, b, c, loose = _ids("i", 4)
    await _issue(publisher, a, milestone)
    await _issue(publisher, b, milestone)
    await _issue(publisher, c, other, status="closed")  # created closed: nothing closed it
    await _issue(publisher, loose, None)
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as processor:
        await _status(publisher, a, milestone, "open", "closed")  # b still open
        await _status(publisher, loose, None, "open", "closed")  # in no milestone
        await _status(publisher, b, milestone, "open", "in_progress")  # not closed
        await publisher.emit(event_type="issue.updated", entity_id=c, data={"current": {"title": "retitled"}})
        assert await processor.catch_up() == []
        # Moving the open issue out leaves only closed ones, but nothing closed: no completion.
        await emit_change(publisher, "issue", b, previous={"milestone_id": milestone}, current={"milestone_id": other})
        assert await processor.catch_up() == []
        # A bare `issue.closed` (Turbo publishing it alone) is a close too, of the milestone it knew.
        await publisher.emit(event_type="issue.closed", entity_id=b, data={"current": {"title": "done"}})
        (completed,) = await processor.catch_up()
    assert completed.entity_id == other
    assert await _completions(js, settings, start_seq, milestone) == []


async def test_an_issue_moved_out_no_longer_counts(publisher: EventPublisher, bucket: str, start_seq: int) -> None:
    milestone, other = _ids("m", 2)
    kept, moved = _ids("i", 2)
    await _issue(publisher, kept, milestone)
    await _issue(publisher, moved, milestone)
    await emit_change(publisher, "issue", moved, previous={"milestone_id": milestone}, current={"milestone_id": other})
    async with MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq) as processor:
        await _status(publisher, kept, milestone, "open", "closed")
        (completed,) = await processor.catch_up()
    assert completed.entity_id == milestone and completed.data.current["issues_total"] == 1


async def test_run_follows_the_stream_live(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, bucket: str, start_seq: int
) -> None:
    (milestone,) = _ids("m", 1)
    (issue,) = _ids("i", 1)
    processor = MilestoneProcessor(publisher, bucket=bucket, start_seq=start_seq)
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    try:
        await _issue(publisher, issue, milestone)
        await _status(publisher, issue, milestone, "open", "closed")
        (completed,) = await eventually(lambda: _completions(js, settings, start_seq, milestone))
        assert completed.entity_id == milestone
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    kv = await js.key_value(bucket)
    assert int((await kv.get("cursor")).value or b"0") >= start_seq
    assert (await kv.get(kv_key("milestone", milestone))).value
