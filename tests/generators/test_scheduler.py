"""Time-based events with a controllable clock: thresholds, overdue, starting soon, reports; exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any

import pytest
from nats.js import JetStreamContext

from publishers import EventPublisher
from publishers._changes import emit_change
from publishers.processors import (
    ScheduledItem,
    Scheduler,
    due_now,
    label,
    learn,
    parse_when,
)
from streams import ConfigError, Event, Settings, build_event, connect_nats
from streams.settings import SchedulerSettings

from .conftest import FakeClock, eventually, stored_events

DAY = timedelta(days=1)
T0 = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)


# -- settings and pure rules --------------------------------------------------------


def test_settings_defaults_and_environment() -> None:
    assert SchedulerSettings.from_env({}) == SchedulerSettings(
        due_thresholds=(7 * 86400.0, 3 * 86400.0, 86400.0),
        starting_soon=900.0,
        digest_time=clock_time(9, 0),
        weekly_report_day=0,
    )
    settings = SchedulerSettings.from_env(
        {
            "TURBOHOOKS_DUE_THRESHOLDS": "1d, 12h,3d,1d",
            "TURBOHOOKS_STARTING_SOON": "5m",
            "TURBOHOOKS_DIGEST_TIME": "17:30",
            "TURBOHOOKS_WEEKLY_REPORT_DAY": "Fri",
        }
    )
    assert [label(t) for t in settings.due_thresholds] == ["3d", "1d", "12h"]
    assert (settings.starting_soon, settings.digest_time, settings.weekly_report_day) == (300.0, clock_time(17, 30), 4)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TURBOHOOKS_DUE_THRESHOLDS", "7d,soon"),
        ("TURBOHOOKS_DUE_THRESHOLDS", "0s"),
        ("TURBOHOOKS_STARTING_SOON", "fifteen"),
        ("TURBOHOOKS_STARTING_SOON", "0"),
        ("TURBOHOOKS_DIGEST_TIME", "25:00"),
        ("TURBOHOOKS_WEEKLY_REPORT_DAY", "someday"),
        ("TURBOHOOKS_WEEKLY_REPORT_DAY", "mo"),
    ],
)
def test_bad_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        SchedulerSettings.from_env({variable: value})
    assert refused.value.variable == variable
    assert variable in str(refused.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-03-10", datetime(2031, 3, 11, tzinfo=UTC)),  # a date is due by the end of that day
        ("2031-03-10T10:00:00+02:00", datetime(2031, 3, 10, 8, tzinfo=UTC)),
        ("2031-03-10T10:00:00Z", datetime(2031, 3, 10, 10, tzinfo=UTC)),
        ("2031-03-10T10:00:00", datetime(2031, 3, 10, 10, tzinfo=UTC)),
        ("next tuesday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_when(text: str | None, expected: datetime | None) -> None:
    assert parse_when(text) == expected


@pytest.mark.parametrize(
    ("before_due", "expected"),
    [
        (timedelta(days=8), None),
        (timedelta(days=7), "7d"),
        (timedelta(days=5), "7d"),
        (timedelta(days=3), "3d"),
        (timedelta(days=2), "3d"),
        (timedelta(hours=1), "1d"),
        (timedelta(0), "overdue"),
        (-timedelta(days=40), "overdue"),
    ],
)
def test_due_now_picks_the_tightest_threshold_reached(before_due: timedelta, expected: str | None) -> None:
    item = ScheduledItem(kind="issue", entity_id="i-1", at=T0, text=T0.isoformat())
    due = due_now(item, T0 - before_due, SchedulerSettings())
    assert (due.label if due else None) == expected
    assert due_now(ScheduledItem(kind="issue", entity_id="i-1", at=T0, open=False), T0, SchedulerSettings()) is None


def test_learn_follows_status_only_when_it_changed() -> None:
    def event(event_type: str, current: dict[str, Any], changes: list[str] | None = None) -> Event:
        return build_event(event_type=event_type, entity_id="m-1", data={"current": current, "changes": changes or []})

    item = learn(None, event("milestone.created", {"due_date": "2031-03-10", "status": "planned"}), 1)
    assert item is not None and item.open and item.at == datetime(2031, 3, 11, tzinfo=UTC)
    item = learn(item, event("milestone.completed", {"status": "in_progress"}), 2)
    assert item is not None and not item.open
    stale = event(
        "milestone.updated", {"status": "in_progress", "completion_percentage": 90}, ["completion_percentage"]
    )
    assert learn(item, stale, 3) is item, "an update that did not change the status does not reopen it"
    assert learn(item, event("milestone.updated", {"status": "in_progress"}, ["status"]), 4).open  # type: ignore[union-attr]
    assert learn(item, event("milestone.updated", {"due_date": "2031-03-10"}), 1) is item, "an older event is skipped"
    assert learn(None, event("milestone.created", {"name": "no due date"}), 5) is None


# -- against the real server ----------------------------------------------------------


@pytest.fixture
def make_scheduler(publisher: EventPublisher, bucket: str, start_seq: int) -> Callable[..., Scheduler]:
    def make(clock: FakeClock, *, on: EventPublisher | None = None, **kwargs: Any) -> Scheduler:
        kwargs.setdefault("reports", False)
        return Scheduler(on or publisher, clock=clock, bucket=bucket, start_seq=start_seq, **kwargs)

    return make


async def _issue(publisher: EventPublisher, due: datetime | str | None, **fields: Any) -> str:
    issue_id = f"i-{uuid.uuid4().hex[:10]}"
    current = {"title": "Ship it", "status": "open", "due_date": due, **fields}
    await emit_change(publisher, "issue", issue_id, previous=None, current=current, context={"project_id": "p-1"})
    return issue_id


async def _timed(js: JetStreamContext, settings: Settings, start_seq: int, entity_id: str) -> list[Event]:
    """The time-based events stored for ``entity_id``."""
    events = await stored_events(js, settings, start_seq, entity_ids={entity_id})
    return [e for e in events if e.actor.name == "turbohooks-scheduler"]


def _labels(events: list[Event]) -> list[str]:
    return [str(e.data.current.get("threshold", e.action)) for e in events]


async def test_thresholds_then_overdue_each_once(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    due = T0 + 10 * DAY
    issue = await _issue(publisher, due.isoformat())
    async with make_scheduler(clock) as scheduler:
        await scheduler.catch_up()
        assert await scheduler.tick() == []
        for when, expected in [(7, "7d"), (3, "3d"), (1, "1d")]:
            clock.now = due - when * DAY
            (fired,) = await scheduler.tick()
            assert (fired.event_type, fired.data.current["threshold"]) == ("issue.due_date_approaching", expected)
            clock.advance(hours=1)
            assert await scheduler.tick() == [], "once per threshold"
        clock.now = due
        (overdue,) = await scheduler.tick()
        clock.advance(days=30)
        assert await scheduler.tick() == []
    assert overdue.event_type == "issue.overdue" and overdue.data.current["overdue_since"] == due.isoformat()
    stored = await _timed(js, settings, start_seq, issue)
    assert _labels(stored) == ["7d", "3d", "1d", "overdue"]
    first = stored[0]
    assert first.data.current["title"] == "Ship it" and first.data.current["due_date"] == due.isoformat()
    assert first.context.project_id == "p-1" and first.causation_id is not None


async def test_exactly_once_across_a_restart(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    due = T0 + 5 * DAY
    issue = await _issue(publisher, due.isoformat())
    async with make_scheduler(clock) as first:
        await first.catch_up()
        assert _labels(await first.tick()) == ["7d"]
    async with make_scheduler(clock) as second:  # same bucket: what the first knew and fired
        assert await second.catch_up() == 0, "the cursor was saved"
        assert await second.tick() == [], "the marker says it was published; nothing is sent again"
        clock.now = due - 2 * DAY
        assert _labels(await second.tick()) == ["3d"]
    assert _labels(await _timed(js, settings, start_seq, issue)) == ["7d", "3d"]


@asynccontextmanager
async def _second_publisher(settings: Settings) -> AsyncIterator[EventPublisher]:
    nc = await connect_nats(settings, name="second-scheduler")
    try:
        async with EventPublisher(settings, nc=nc, name="second") as other:
            yield other
    finally:
        await nc.close()


async def test_two_schedulers_publish_once(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    due = T0 + 2 * DAY
    issue = await _issue(publisher, due.isoformat())
    async with _second_publisher(settings) as other, make_scheduler(clock) as a, make_scheduler(clock, on=other) as b:
        await asyncio.gather(a.catch_up(), b.catch_up())
        await asyncio.gather(a.tick(), b.tick())
        assert await a.tick() == [] and await b.tick() == []
        clock.now = due
        await asyncio.gather(a.tick(), b.tick())
        clock.advance(hours=2)
        assert await a.tick() == [] and await b.tick() == []
    assert _labels(await _timed(js, settings, start_seq, issue)) == ["3d", "overdue"]


async def test_a_moved_due_date_withdraws_the_old_thresholds(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    old_due, new_due = T0 + 2 * DAY, T0 + 20 * DAY
    issue = await _issue(publisher, old_due.isoformat())
    async with make_scheduler(clock) as scheduler:
        await scheduler.catch_up()
        assert _labels(await scheduler.tick()) == ["3d"]
        await emit_change(
            publisher,
            "issue",
            issue,
            previous={"due_date": old_due.isoformat()},
            current={"due_date": new_due.isoformat()},
        )
        await scheduler.catch_up()
        clock.now = old_due + timedelta(hours=1)  # the old date passes: no 1d, no overdue
        assert await scheduler.tick() == []
        clock.now = new_due - 7 * DAY
        (fired,) = await scheduler.tick()
    assert fired.data.current["due_date"] == new_due.isoformat()
    assert _labels(await _timed(js, settings, start_seq, issue)) == ["3d", "7d"]


async def test_closing_first_withdraws_and_reopening_restores(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    due = "2031-03-05"  # a date: due by the end of that day
    issue = await _issue(publisher, due)
    async with make_scheduler(clock) as scheduler:
        await scheduler.catch_up()
        assert _labels(await scheduler.tick()) == ["3d"]
        await emit_change(publisher, "issue", issue, previous={"status": "open"}, current={"status": "closed"})
        await scheduler.catch_up()
        clock.now = datetime(2031, 3, 5, 23, 0, tzinfo=UTC)
        assert await scheduler.tick() == [], "closed: no 1d warning"
        clock.now = datetime(2031, 3, 6, 0, 0, tzinfo=UTC)
        assert await scheduler.tick() == [], "closed: never overdue"
        await publisher.emit(event_type="issue.reopened", entity_id=issue, data={"current": {"status": "open"}})
        await scheduler.catch_up()
        assert _labels(await scheduler.tick()) == ["overdue"]
    assert _labels(await _timed(js, settings, start_seq, issue)) == ["3d", "overdue"]


async def test_milestones_warn_until_completed(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    due = (T0 + 2 * DAY).isoformat()
    done, late = (f"m-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for milestone in (done, late):
        await publisher.emit(
            event_type="milestone.created", entity_id=milestone, data={"current": {"name": "v2", "due_date": due}}
        )
    async with make_scheduler(clock) as scheduler:
        await scheduler.catch_up()
        fired = await scheduler.tick()
        assert sorted((e.entity_id, e.event_type) for e in fired) == sorted(
            [(done, "milestone.due_date_approaching"), (late, "milestone.due_date_approaching")]
        )
        await publisher.emit(event_type="milestone.completed", entity_id=done)
        await scheduler.catch_up()
        clock.advance(days=3)
        (overdue,) = await scheduler.tick()
    assert (overdue.entity_id, overdue.event_type) == (late, "milestone.overdue")
    assert _labels(await _timed(js, settings, start_seq, done)) == ["3d"]


async def test_calendar_events_start_soon_once(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    later, imminent, past = (f"ev-{uuid.uuid4().hex[:10]}" for _ in range(3))
    for event_id, start in ((later, T0 + timedelta(hours=1)), (imminent, T0 + timedelta(minutes=5)), (past, T0)):
        await emit_change(
            publisher,
            "calendar",
            event_id,
            previous=None,
            current={"title": "Standup", "start_time": start.isoformat()},
        )
    async with make_scheduler(clock) as scheduler:
        await scheduler.catch_up()
        (soon,) = await scheduler.tick()
        assert (soon.entity_id, soon.event_type, soon.data.current["starts_in"]) == (
            imminent,
            "calendar.event_starting_soon",
            "15m",
        )
        assert soon.context.calendar_event_id == imminent
        clock.now = T0 + timedelta(minutes=45)
        (soon,) = await scheduler.tick()
        assert soon.entity_id == later
        clock.now = T0 + timedelta(minutes=59)
        assert await scheduler.tick() == []
    assert len(await _timed(js, settings, start_seq, past)) == 0, "a start already passed is not announced"


async def test_daily_digest_and_weekly_report(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    real_now = datetime.now(UTC)
    occurrence = datetime.combine(real_now.date(), clock_time(9, 0), UTC)
    if occurrence <= real_now:
        occurrence += DAY  # the next 09:00: its 24 hours include the events published now
    clock = FakeClock(occurrence - timedelta(minutes=1))
    reports = SchedulerSettings(digest_time=clock_time(9, 0), weekly_report_day=occurrence.weekday())
    closed = await _issue(publisher, None, title="Fix the login")
    await emit_change(
        publisher,
        "issue",
        closed,
        previous={"title": "Fix the login", "status": "open"},
        current={"title": "Fix the login", "status": "closed"},
    )
    async with make_scheduler(clock, settings=reports, reports=True) as scheduler:
        await scheduler.catch_up()
        assert await scheduler.tick() == [], "no report for a time before the scheduler existed"
        clock.now = occurrence + timedelta(seconds=1)
        daily, weekly = await scheduler.tick()
        assert await scheduler.tick() == []
    async with make_scheduler(clock, settings=reports, reports=True) as restarted:
        assert await restarted.tick() == [], "once, across restarts"
    assert (daily.event_type, weekly.event_type) == ("system.daily_digest", "system.weekly_report")
    assert daily.entity_id == f"daily_digest-{occurrence.date().isoformat()}"
    digest = daily.data.current
    assert digest["period_end"] == occurrence.isoformat()
    assert digest["period_start"] == (occurrence - DAY).isoformat()
    assert digest["counts"]["issue.closed"] >= 1 and digest["total"] >= digest["counts"]["issue.created"] >= 1
    assert {"entity_type": "issue", "entity_id": closed, "title": "Fix the login"} in digest["highlights"][
        "issues_closed"
    ]
    assert weekly.data.current["period_start"] == (occurrence - 7 * DAY).isoformat()
    assert weekly.data.current["total"] >= digest["total"]
    stored = await stored_events(js, settings, start_seq, entity_ids={daily.entity_id, weekly.entity_id})
    assert [e.event_id for e in stored] == [daily.event_id, weekly.event_id]


async def test_run_ticks_by_itself(
    publisher: EventPublisher,
    js: JetStreamContext,
    settings: Settings,
    start_seq: int,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    clock = FakeClock(T0)
    issue = await _issue(publisher, (T0 - DAY).isoformat())
    scheduler = make_scheduler(clock, tick_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        (overdue,) = await eventually(lambda: _timed(js, settings, start_seq, issue))
        assert overdue.event_type == "issue.overdue"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
