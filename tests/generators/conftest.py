"""Fixtures of the generator tests: a publisher, a fresh KV bucket, where the stream stands, a clock."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from publishers import EventPublisher
from publishers.processors import StreamFollower, decode_messages
from streams import Event, Settings

T = TypeVar("T")


class FakeClock:
    """A clock the test moves by hand: no test waits for real days."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def publisher(settings: Settings, nc: object, js: JetStreamContext) -> AsyncIterator[EventPublisher]:
    """An open publisher on the session's server (streams provisioned)."""
    async with EventPublisher(settings, nc=nc, name="generators") as open_publisher:  # type: ignore[arg-type]
        yield open_publisher


@pytest.fixture
async def bucket(js: JetStreamContext) -> AsyncIterator[str]:
    """A KV bucket name of this test alone, deleted afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(name)


@pytest.fixture
async def start_seq(js: JetStreamContext, settings: Settings) -> int:
    """The stream sequence this test's events start at (the stream is shared by the session)."""
    return int((await js.stream_info(settings.stream_name)).state.last_seq) + 1


async def stored_events(
    js: JetStreamContext, settings: Settings, start_seq: int, *, entity_ids: set[str] | None = None
) -> list[Event]:
    """Every event stored from ``start_seq`` on (of ``entity_ids`` when given), in stream order."""
    follower = StreamFollower(js, settings.stream_name, ["turbo.>"])
    await follower.open(start_seq=start_seq)
    events: list[Event] = []
    try:
        async for msgs in follower.read_all():
            events.extend(event for _, event in decode_messages(msgs))
    finally:
        await follower.close()
    return [e for e in events if entity_ids is None or e.entity_id in entity_ids]


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.05)
