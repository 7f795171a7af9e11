"""The traffic simulator: deterministic with a seed, realistic, paced."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from publishers import PublishAck
from publishers._simulator import Simulator
from streams import EVENT_CATALOG, Event

# What the simulator leaves to the scheduler and the milestone processor, and the alarm it never raises nor clears.
NOT_SIMULATED = {
    "issue.due_date_approaching",
    "issue.overdue",
    "milestone.due_date_approaching",
    "milestone.overdue",
    "milestone.completed",
    "calendar.event_starting_soon",
    "system.daily_digest",
    "system.weekly_report",
    "system.health_check_failed",
    "system.health_check_recovered",
}


class Recording:
    """A publisher that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    async def emit_many(self, events: Iterable[Event]) -> list[PublishAck]:
        self.batches.append(list(events))
        return []

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


async def _play(seed: int, steps: int) -> Recording:
    recording = Recording()
    await Simulator(recording, seed=seed, rate=None).run(steps=steps)
    return recording


async def test_the_same_seed_plays_the_same_events() -> None:
    first, second, other = await _play(42, 400), await _play(42, 400), await _play(43, 400)
    sequence = [(e.event_type, e.entity_id) for e in first.events]
    assert sequence == [(e.event_type, e.entity_id) for e in second.events]
    assert sequence != [(e.event_type, e.entity_id) for e in other.events]
    assert all(e.entity_id.startswith("sim42-") for e in first.events)


async def test_traffic_covers_the_catalog_with_derived_events_in_their_batch() -> None:
    recording = Recording()
    stats = await Simulator(recording, seed=7, rate=None, clock=lambda: datetime(2031, 1, 1, tzinfo=UTC)).run(
        steps=3000
    )
    assert set(EVENT_CATALOG) - set(stats.counts) == NOT_SIMULATED
    assert stats.events == len(recording.events) == sum(stats.counts.values())
    for batch in recording.batches:
        ids = {e.event_id for e in batch}
        for event in batch[1:]:
            assert event.causation_id in ids or event.causation_id is None
    mentions = [e for e in recording.events if e.event_type == "comment.mention"]
    assert mentions and all(f"@{e.data.current['mentioned']}" in e.data.current["content"] for e in mentions)


async def test_a_duration_bounds_a_paced_run() -> None:
    recording = Recording()
    stats = await Simulator(recording, seed=1, rate=200).run(duration=0.3)
    assert 0 < stats.events <= 200 * 0.3 + 10
    assert stats.elapsed < 1.0
