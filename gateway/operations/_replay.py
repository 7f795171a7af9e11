"""Replay: deliver stored events again to one subscription, without touching its live consumer.

The events are read with an ephemeral consumer and each is queued on the
redelivery stream (``trigger="replay"``), where a worker of the subscription's
integration makes one attempt and records it. The live consumer's position,
backlog and retries are left exactly as they were. ``POST .../replay`` and
``turbohooks replay`` both call :func:`replay_subscription`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec

from streams import (
    EventValidationError,
    decode_event,
    event_type_of_subject,
    filter_subjects,
    match_event_types,
    normalize_patterns,
)

from ._audit import record_audit
from ._queue import queue_redelivery, require_active
from ._stream import count_matching, read_forward, seq_at_time, stream_bounds

if TYPE_CHECKING:
    from consumers import Engine, Subscription

__all__ = ("MAX_REPLAY_EVENTS", "ReplayItem", "ReplayRange", "ReplayResult", "replay_subscription")

MAX_REPLAY_EVENTS: Final = 10_000
"""Events one replay reads and queues at most; the answer's ``next_seq`` continues."""
_QUEUE_BATCH: Final = 64

Progress = Callable[[int, int], None]
"""Called with (events handled, events planned) as a replay goes."""


class ReplayItem(msgspec.Struct, kw_only=True):
    """One event of a replay."""

    seq: int
    event_id: uuid.UUID | None
    """``null`` for a message that is not a valid event (it is skipped)."""
    event_type: str
    stored_at: datetime


class ReplayResult(msgspec.Struct, kw_only=True):
    """What a replay queued (or, with ``dry_run``, would queue)."""

    subscription_id: uuid.UUID
    dry_run: bool
    event_types: list[str]
    """The event types replayed: the subscription's, narrowed by the request's patterns."""
    first_seq: int
    """The range read: ``[first_seq, last_seq]``."""
    last_seq: int
    matched: int
    """Events of the range that match."""
    queued: int
    """Events queued for delivery (0 for a dry run)."""
    skipped: int = 0
    """Messages of the range that are not events of their subject (listed with ``event_id`` null, never sent)."""
    max_events: int
    """The most events one replay handles."""
    truncated: bool
    """True when the range held more than ``max_events``: replay again from ``next_seq``."""
    next_seq: int | None = None
    events: list[ReplayItem] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplayRange:
    """Which events to replay: start at ``since`` or ``from_seq``; end at ``until``, ``to_seq`` or now."""

    since: datetime | None = None
    until: datetime | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    event_types: list[str] | None = None
    dry_run: bool = False

    def check(self) -> None:
        """Refuse a range that is missing its start or contradicts itself, naming the field."""
        if self.since is not None and self.from_seq is not None:
            raise EventValidationError("from_seq", "give either since or from_seq, not both")
        if self.until is not None and self.to_seq is not None:
            raise EventValidationError("to_seq", "give either until or to_seq, not both")
        if self.since is None and self.from_seq is None:
            raise EventValidationError("since", "give since (a time, or 2h) or from_seq: where the replay starts")
        if self.from_seq is not None and self.to_seq is not None and self.to_seq < self.from_seq:
            raise EventValidationError("to_seq", "must not be smaller than from_seq")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise EventValidationError("until", "must be later than since")


def _event_types(sub: Subscription, patterns: list[str] | None) -> list[str]:
    """The subscription's event types, narrowed to ``patterns`` when given."""
    own = match_event_types(sub.event_types)
    if patterns is None:
        return own
    wanted = set(match_event_types(normalize_patterns(patterns, field="event_types")))
    chosen = [t for t in own if t in wanted]
    if not chosen:
        raise EventValidationError(
            "event_types", f"match none of the subscription's event types ({', '.join(sub.event_types)})"
        )
    return chosen


async def replay_subscription(
    engine: Engine,
    sub: Subscription,
    spec: ReplayRange,
    *,
    max_events: int = MAX_REPLAY_EVENTS,
    progress: Progress | None = None,
) -> ReplayResult:
    """Queue (or with ``dry_run`` list) the stored events of ``spec`` for ``sub``."""
    spec.check()
    if not spec.dry_run:
        require_active(sub, "replay")
    types = _event_types(sub, spec.event_types)
    subjects = filter_subjects(types)
    js, stream = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, stream)
    if spec.from_seq is not None:
        first = spec.from_seq
    else:
        assert spec.since is not None  # check() made sure
        first = await seq_at_time(js, stream, spec.since, bounds)
    first = max(first, bounds.first)
    if spec.to_seq is not None:
        last = spec.to_seq
    elif spec.until is not None:
        last = await seq_at_time(js, stream, spec.until, bounds) - 1
    else:
        last = bounds.last
    last = min(last, bounds.last)
    matched = await count_matching(js, stream, subjects, first=first, last=last)
    planned = min(matched, max_events)
    if progress is not None:
        progress(0, planned)

    items: list[ReplayItem] = []
    batch: list[tuple[bytes, int]] = []
    queued = 0
    skipped = 0
    next_seq: int | None = None

    async def flush() -> None:
        nonlocal queued
        await asyncio.gather(
            *(queue_redelivery(engine, sub, payload, trigger="replay", stream_seq=seq) for payload, seq in batch)
        )
        queued += len(batch)
        batch.clear()
        if progress is not None:
            progress(len(items), planned)

    async with contextlib.aclosing(read_forward(js, stream, subjects, first=first, last=last)) as messages:
        async for msg in messages:
            meta = msg.metadata
            seq = meta.sequence.stream
            if len(items) >= max_events:
                next_seq = seq
                break
            try:
                event = decode_event(msg.data, subject=msg.subject)
            except EventValidationError:
                # Not an event of the contract, or not of its subject's type (refused by workers): listed, not sent.
                skipped += 1
                items.append(
                    ReplayItem(
                        seq=seq, event_id=None, event_type=event_type_of_subject(msg.subject), stored_at=meta.timestamp
                    )
                )
                continue
            items.append(
                ReplayItem(seq=seq, event_id=event.event_id, event_type=event.event_type, stored_at=meta.timestamp)
            )
            if not spec.dry_run:
                batch.append((msg.data, seq))
                if len(batch) >= _QUEUE_BATCH:
                    await flush()
            elif progress is not None and len(items) % _QUEUE_BATCH == 0:
                progress(len(items), planned)
    await flush()
    if not spec.dry_run:
        await record_audit(engine, None, "replay", f"subscription:{sub.id}", {"first_seq": first, "queued": queued})
    return ReplayResult(
        subscription_id=sub.id,
        dry_run=spec.dry_run,
        event_types=types,
        first_seq=first,
        last_seq=last,
        matched=matched,
        queued=queued,
        skipped=skipped,
        max_events=max_events,
        truncated=next_seq is not None,
        next_seq=next_seq,
        events=items,
    )
