"""The stream processors' one lifecycle and run loop: follow the stream, apply each batch, survive outages."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from nats.aio.msg import Msg

from streams import NATS_ERRORS, PublishError

from ._follow import StreamFollower

__all__ = ("FollowingProcessor",)

_log = logging.getLogger("turbohooks.follow")


class FollowingProcessor:
    """A processor that follows the stream: ``open`` it (or use it as an async context manager), then ``run``.

    A subclass opens its state and its :class:`StreamFollower` in :meth:`open`,
    keeps ``_applied`` (the last stream sequence applied), and says in
    :meth:`step` what one batch does. :meth:`run` is the loop they share: fetch,
    step, and after a NATS outage or a refused publish, follow again from the
    event after the last one applied.
    """

    name = "processor"
    """How the log names it."""
    fetch_timeout = 1.0
    """Seconds one fetch waits; :meth:`step` runs at least this often (with an empty batch)."""
    _follower: StreamFollower | None = None
    _applied = 0

    async def open(self) -> None:
        """Start following the stream (subclasses load their state first)."""
        raise NotImplementedError

    async def step(self, msgs: list[Msg]) -> None:
        """Apply one batch (empty when nothing came within ``fetch_timeout``)."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the stream until ``stop`` is set; through NATS outages, from the last event applied."""
        await self.open()
        assert self._follower is not None
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                msgs = await self._follower.fetch_or_stop(stopper, self.fetch_timeout)
                if msgs is None:
                    break
                try:
                    await self.step(msgs)
                except (PublishError, *NATS_ERRORS) as exc:
                    _log.warning("%s: %s; starting again after seq %d", self.name, exc, self._applied)
                    await self._follower.restart(self._applied + 1, stop)
        finally:
            stopper.cancel()
            await self.close()

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
