"""A continuous pull: pull requests kept outstanding on one durable consumer, refilled as work completes.

nats-py offers ``fetch(batch, timeout)``, which waits for a whole batch or its
timeout: with a sliding window, slots free one at a time and each fetch then
costs a round trip per message. This keeps requests outstanding instead (what
nats.go's ``Consume`` does): messages arrive on an inbox as the server has them,
and a new request goes out when at least half of the window is free.

A restarted server has forgotten our requests: when the connection comes back
(nats-py's reconnect notification, :func:`on_reconnect`), every pull on it
asks again at once, so deliveries resume as soon as the server is back. Idle
heartbeats are the fallback that notices a server gone silent otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from streams import NATS_ERRORS

__all__ = ("ContinuousPull", "on_reconnect")

_log = logging.getLogger("turbohooks.pull")

_STATUS: Final = "Status"
_PENDING_MESSAGES: Final = "Nats-Pending-Messages"


class _PullRequest(msgspec.Struct, omit_defaults=True):
    batch: int
    expires: int
    idle_heartbeat: int


_encoder: Final = msgspec.json.Encoder()
_UNAVAILABLE_PAUSE: Final = 0.25
"""Seconds before asking again when JetStream answered 503 (not ready yet, e.g. just restarted)."""

Listener = Callable[[], Awaitable[None]]
_listeners: weakref.WeakKeyDictionary[NATS, set[Listener]] = weakref.WeakKeyDictionary()


def on_reconnect(nc: NATS) -> set[Listener]:
    """The callbacks run after each reconnect of ``nc`` (add to it, discard from it).

    nats-py has one ``reconnected_cb``, given at connect time by whoever connected
    (``streams.connect_nats`` logs with it); this chains after it, once per
    connection. The listeners run in a task of their own, so the client's
    reconnect sequence is never held up nor broken by one of them.
    """
    listeners = _listeners.get(nc)
    if listeners is not None:
        return listeners
    registered: set[Listener] = set()
    _listeners[nc] = registered
    previous: Listener | None = getattr(nc, "_reconnected_cb", None)
    tasks: set[asyncio.Task[None]] = set()

    async def notify() -> None:
        for listener in list(registered):
            try:
                await listener()
            except Exception:  # noqa: BLE001  one listener's bug must not keep the others from asking again
                _log.exception("a reconnect listener failed")

    async def reconnected() -> None:
        if previous is not None:
            await previous()
        task = asyncio.create_task(notify(), name="turbohooks-reconnected")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    nc._reconnected_cb = reconnected  # the one hook nats-py offers: see the docstring
    return registered


class ContinuousPull:
    """Deliver every message of ``consumer`` to ``handle`` with at most ``window`` in hand at once.

    ``handle`` is awaited in its own task per message; the window slot is freed
    when it returns. ``stop()`` stops asking and waits for the tasks in hand.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        handle: Callable[[Msg], Awaitable[None]],
        *,
        window: int,
        expires: float = 30.0,
        heartbeat: float = 10.0,
        api_prefix: str = "$JS.API",
    ) -> None:
        self.nc = nc
        self.handle = handle
        self.window = window
        self.expires = expires
        self.heartbeat = heartbeat
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._sub: NatsSubscription | None = None
        self._inbox = ""
        self._requested = 0
        """Messages asked for and not yet arrived (nor expired)."""
        self._in_hand: set[asyncio.Task[None]] = set()
        self._last_seen = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._paused_until = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._asking: set[asyncio.Task[None]] = set()
        """Delayed refills in progress (kept referenced; not messages in hand)."""

    @property
    def in_hand(self) -> int:
        """Messages being handled now."""
        return len(self._in_hand)

    async def start(self) -> None:
        """Subscribe to the inbox and send the first request."""
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message, pending_msgs_limit=self.window * 4)
        self._watchdog = asyncio.create_task(self._watch())
        on_reconnect(self.nc).add(self._reconnected)
        await self._refill()

    async def _reconnected(self) -> None:
        """The connection came back: requests in flight died with the old one (a server restart); ask again."""
        self._requested = 0
        self._last_seen = time.monotonic()
        await self._refill()

    def resize(self, window: int) -> None:
        """Hold at most ``window`` messages from now on (a rate limit's window); a larger one asks at once."""
        grew = window > self.window
        self.window = window
        if grew:
            self._ask_now()

    def hold(self, seconds: float) -> None:
        """Ask for nothing more for ``seconds`` (the receiver said it is gone)."""
        self._paused_until = time.monotonic() + seconds

    async def close_inbox(self) -> None:
        """Receive nothing more, at once (the messages in hand are still handled and settled).

        The server drops a pull request whose inbox has no subscriber before it
        delivers to it, so what this consumer still has to give goes to other
        worker copies, not to an inbox nobody reads (whose messages would wait
        out ``ack_wait``). Then :meth:`stop` waits for the messages in hand.
        """
        self._stopping = True
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await sub.unsubscribe()

    async def stop(self, timeout: float) -> None:
        """Stop asking; wait up to ``timeout`` for the messages in hand; unsubscribe."""
        self._stopping = True
        on_reconnect(self.nc).discard(self._reconnected)
        if self._retry is not None:
            self._retry.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._in_hand:
            await asyncio.wait(set(self._in_hand), timeout=timeout)
        if self._sub is not None:
            # Messages the server sends to this inbox after this are never
            # acknowledged: JetStream redelivers them after ack_wait.
            with contextlib.suppress(*NATS_ERRORS):
                await self._sub.unsubscribe()

    async def _refill(self) -> None:
        if self._stopping or time.monotonic() < self._paused_until:
            return
        free = self.window - len(self._in_hand) - self._requested
        # Ask when half the window is free (or nothing is asked at all), so a
        # busy consumer sends one request per many messages.
        if free <= 0 or (self._requested > 0 and free < max(1, self.window // 2)):
            return
        request = _PullRequest(batch=free, expires=int(self.expires * 1e9), idle_heartbeat=int(self.heartbeat * 1e9))
        self._requested += free
        try:
            await self.nc.publish(self._next_subject, _encoder.encode(request), reply=self._inbox)
        except NATS_ERRORS as exc:
            self._requested -= free
            _log.debug("pull request not sent (%s); the watchdog retries", exc)

    async def _on_message(self, msg: Msg) -> None:
        self._last_seen = time.monotonic()
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is not None:
            await self._on_status(status, headers or {})
            return
        self._requested = max(0, self._requested - 1)
        task = asyncio.create_task(self._run(msg))
        self._in_hand.add(task)

    async def _on_status(self, status: str, headers: dict[str, str]) -> None:
        if status == "100":
            return  # idle heartbeat: the server still holds our request
        # 408 (request expired), 409 (limits, leadership change), 404: the
        # request is over; what it did not deliver is no longer asked for.
        unfilled = headers.get(_PENDING_MESSAGES)
        if unfilled is not None and unfilled.isdigit():
            self._requested = max(0, self._requested - int(unfilled))
        else:
            self._requested = 0
        if status not in ("408", "404"):
            _log.debug("pull request ended with %s %s", status, headers.get("Description", ""))
        if status == "503":
            # No JetStream behind the subject (yet): asking again at once would spin.
            self._ask_soon()
            return
        await self._refill()

    def _ask_soon(self) -> None:
        if self._retry is None or self._retry.cancelled() or self._retry.when() < asyncio.get_running_loop().time():
            self._retry = asyncio.get_running_loop().call_later(_UNAVAILABLE_PAUSE, self._ask_now)

    def _ask_now(self) -> None:
        self._retry = None
        if not self._stopping:
            task = asyncio.create_task(self._refill())
            self._asking.add(task)
            task.add_done_callback(self._asking.discard)

    async def _run(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception:  # noqa: BLE001  a bug in one delivery must not stop the consumer; the event is redelivered
            _log.exception("delivery of %s crashed; it will be redelivered", msg.reply)
        finally:
            self._in_hand.discard(asyncio.current_task())
            await self._refill()

    async def _watch(self) -> None:
        """Re-ask when nothing (not even a heartbeat) came for too long: the server lost our requests."""
        while not self._stopping:
            await asyncio.sleep(self.heartbeat)
            now = time.monotonic()
            if now < self._paused_until:
                continue
            if self._requested and now - self._last_seen > 2 * self.heartbeat + 1:
                self._requested = 0
                self._last_seen = now
            await self._refill()
