"""The daily digest and the weekly report: when they are due, and the counts and highlights they carry."""

from __future__ import annotations

from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final

from nats.js import JetStreamContext

from streams import EventValidationError, decode_event

from ._follow import StreamFollower

__all__ = ("Tally", "last_daily", "last_weekly", "summarize")

_HIGHLIGHTS: Final = 10


def last_daily(now: datetime, at: clock_time) -> datetime:
    """The latest daily occurrence of ``at`` (UTC) at or before ``now``."""
    today = datetime.combine(now.date(), at, UTC)
    return today if today <= now else today - timedelta(days=1)


def last_weekly(now: datetime, at: clock_time, weekday: int) -> datetime:
    """The latest occurrence of ``at`` on ``weekday`` at or before ``now``."""
    occurrence = last_daily(now, at)
    return occurrence - timedelta(days=(occurrence.weekday() - weekday) % 7)


class Tally:
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


async def summarize(js: JetStreamContext, stream: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Counts and highlights of the events stored in ``[start, end)``."""
    follower = StreamFollower(js, stream, ["turbo.>"])
    await follower.open(start_seq=0, start_time=start)
    tally = Tally()
    try:
        async for msgs in follower.read_all():
            for msg in msgs:
                if msg.metadata.timestamp >= end:
                    return tally.summary(start, end)
                tally.add(msg.subject, msg.data)
    finally:
        await follower.close()
    return tally.summary(start, end)
