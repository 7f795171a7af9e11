"""Reading the events stream without touching any subscription's consumer.

Every read is a short-lived ephemeral pull consumer (in memory, no acks,
removed at the end and by the server after a few idle seconds if this process
dies), so history reads and replays never move a durable consumer.
Sequences are the unit: times are turned into the first sequence stored at or
after them, and a newest-first read walks back in growing windows.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api

from streams import SUBJECT_ROOT

__all__ = (
    "ALL_SUBJECTS",
    "StreamBounds",
    "count_matching",
    "read_backward",
    "read_forward",
    "seq_at_time",
    "stream_bounds",
)

_BATCH: Final = 256
_FETCH_TIMEOUT: Final = 2.0
_INACTIVE: Final = 10.0
"""Seconds after which the server removes a reader this process forgot (it crashed mid-read)."""
_FIRST_WINDOW: Final = 256
_MAX_WINDOW: Final = 65_536
ALL_SUBJECTS: Final = (f"{SUBJECT_ROOT}.>",)


@dataclass(frozen=True, slots=True)
class StreamBounds:
    """The stream's first and last sequence when the read started (``last < first`` when empty)."""

    first: int
    last: int


async def stream_bounds(js: JetStreamContext, stream: str) -> StreamBounds:
    """The current first and last sequence of ``stream``."""
    info = await js.stream_info(stream)
    return StreamBounds(first=info.state.first_seq, last=info.state.last_seq)


def _config(
    subjects: Sequence[str], *, start_seq: int | None, start_time: datetime | None, headers_only: bool
) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.BY_START_TIME if start_time else js_api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_time=start_time,
        opt_start_seq=None if start_time else max(1, start_seq or 1),
        ack_policy=js_api.AckPolicy.NONE,
        filter_subjects=list(subjects),
        headers_only=headers_only or None,
        inactive_threshold=_INACTIVE,
        mem_storage=True,
        num_replicas=1,
    )


async def _delete(js: JetStreamContext, stream: str, name: str | None) -> None:
    if name:
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await js.delete_consumer(stream, name)


@contextlib.asynccontextmanager
async def _reader(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    headers_only: bool = False,
) -> AsyncIterator[tuple[JetStreamContext.PullSubscription, int]]:
    """An ephemeral pull consumer and how many messages it has to deliver."""
    config = _config(subjects, start_seq=start_seq, start_time=start_time, headers_only=headers_only)
    info = await js.add_consumer(stream, config)
    try:
        psub = await js.pull_subscribe_bind(consumer=info.name, stream=stream, pending_msgs_limit=_BATCH * 4)
        try:
            yield psub, info.num_pending or 0
        finally:
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await psub.unsubscribe()
    finally:
        await _delete(js, stream, info.name)


async def _pending_from(js: JetStreamContext, stream: str, subjects: Sequence[str], start_seq: int) -> int:
    """How many messages of ``subjects`` the stream holds from ``start_seq`` on (no message is read)."""
    info = await js.add_consumer(stream, _config(subjects, start_seq=start_seq, start_time=None, headers_only=True))
    await _delete(js, stream, info.name)
    return info.num_pending or 0


async def count_matching(js: JetStreamContext, stream: str, subjects: Sequence[str], *, first: int, last: int) -> int:
    """How many messages of ``subjects`` have sequences in ``[first, last]``, counted by the server."""
    if last < first:
        return 0
    from_first = await _pending_from(js, stream, subjects, first)
    return from_first - await _pending_from(js, stream, subjects, last + 1) if from_first else 0


async def seq_at_time(js: JetStreamContext, stream: str, moment: datetime, bounds: StreamBounds) -> int:
    """The first sequence stored at or after ``moment``; ``bounds.last + 1`` when there is none."""
    async with _reader(js, stream, ALL_SUBJECTS, start_time=moment, headers_only=True) as (psub, pending):
        if pending == 0:
            return bounds.last + 1
        msgs = await psub.fetch(1, timeout=_FETCH_TIMEOUT)
        return int(msgs[0].metadata.sequence.stream)


async def read_forward(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    *,
    first: int,
    last: int,
    headers_only: bool = False,
) -> AsyncGenerator[Msg, None]:
    """Messages of ``subjects`` with sequences in ``[first, last]``, oldest first."""
    if last < first:
        return
    async with _reader(js, stream, subjects, start_seq=first, headers_only=headers_only) as (psub, pending):
        while pending > 0:
            msgs = await psub.fetch(min(_BATCH, pending), timeout=_FETCH_TIMEOUT)
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.stream > last:
                    return
                yield msg
                pending = meta.num_pending
                if pending == 0:
                    return


async def read_backward(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    *,
    first: int,
    last: int,
    headers_only: bool = False,
    max_window: int = _MAX_WINDOW,
) -> AsyncGenerator[Msg, None]:
    """Messages of ``subjects`` with sequences in ``[first, last]``, newest first.

    JetStream only reads forward: each window is read forward and given back
    reversed; windows grow (up to ``max_window`` messages held at once) so that
    a sparse filter costs few consumers.
    """
    window = min(_FIRST_WINDOW, max_window)
    high = last
    while high >= first:
        low = max(first, high - window + 1)
        batch = [
            msg async for msg in read_forward(js, stream, subjects, first=low, last=high, headers_only=headers_only)
        ]
        for msg in reversed(batch):
            yield msg
        high = low - 1
        window = min(window * 4, max_window)
