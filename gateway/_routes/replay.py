"""Replay: deliver stored events again to one subscription, without touching its live consumer.

The events are read with an ephemeral consumer and each is queued on the
redelivery stream (``trigger="replay"``), where a worker of the subscription's
integration makes one attempt and records it. The live consumer's position,
backlog and retries are left exactly as they were. ``turbohooks replay`` calls
:func:`replay_subscription` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from litestar import post
from litestar.params import FromPath, JSONBody

from consumers import Subscription, queue_redelivery
from streams import (
    EventValidationError,
    decode_event,
    event_type_of_subject,
    filter_subjects,
    match_event_types,
    normalize_patterns,
)

from .._problems import responses
from .._schemas import ReplayBody, ReplayItem, ReplayResult
from ._params import EngineDep, parse_when
from ._stream import count_matching, read_forward, seq_at_time, stream_bounds
from .deliveries import require_active

__all__ = ("MAX_REPLAY_EVENTS", "ReplayRange", "replay_events", "replay_subscription")

MAX_REPLAY_EVENTS: Final = 10_000
"""Events one replay reads and queues at most; the answer's ``next_seq`` continues."""
_QUEUE_BATCH: Final = 64

Progress = Callable[[int, int], None]
"""Called with (events handled, events planned) as a replay goes."""


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
    engine: EngineDep,
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
                event = decode_event(msg.data)
            except EventValidationError:
                # Not an event of the contract: listed, never sent.
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
    return ReplayResult(
        subscription_id=sub.id,
        dry_run=spec.dry_run,
        event_types=types,
        first_seq=first,
        last_seq=last,
        matched=matched,
        queued=queued,
        max_events=max_events,
        truncated=next_seq is not None,
        next_seq=next_seq,
        events=items,
    )


@post(
    "/api/subscriptions/{subscription_id:uuid}/replay",
    tags=["subscriptions"],
    status_code=200,
    summary="Deliver stored events again to this subscription",
    description=f"A time (`since`, `until`) or sequence (`from_seq`, `to_seq`) range, optionally narrowed by "
    f"event type patterns. Its live consumer is not touched. At most {MAX_REPLAY_EVENTS} events per call: "
    "when `truncated`, call again with `from_seq` = `next_seq`. `dry_run` lists what would be sent.",
    responses=responses(400, 404, 409, 413, 422, 503),
)
async def replay_events(
    engine: EngineDep, subscription_id: FromPath[uuid.UUID], data: JSONBody[ReplayBody]
) -> ReplayResult:
    sub = await engine.service.get(subscription_id)
    spec = ReplayRange(
        since=parse_when(data.since, "since") if data.since is not None else None,
        until=parse_when(data.until, "until") if data.until is not None else None,
        from_seq=data.from_seq,
        to_seq=data.to_seq,
        event_types=data.event_types,
        dry_run=data.dry_run,
    )
    return await replay_subscription(engine, sub, spec)
