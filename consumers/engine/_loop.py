"""The deliveries of one subscription: a continuous pull with a window of ``max_in_flight``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from nats.aio.msg import Msg

from streams import NATS_ERRORS, Event, EventValidationError, decode_event

from .._messages import AttemptRecord, Subscription
from ..rules import Skip, counted, rules_for
from ..subscriptions._consumer import consumer_name, ensure_consumer, in_flight_limit
from ._deliverer import Attempted
from ._logging import attempt_fields, log_attempt
from ._outcome import Dead, Delivered, Gone, Retry
from ._pull import ContinuousPull
from ._retry import RetryPolicy
from ._throttle import ThrottleHalted

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ("SubscriptionLoop", "position")

_log = logging.getLogger("turbohooks.worker")

_GONE_HOLD: Final = 30.0
_UNWRITTEN_DELAY: Final = 1.0
"""Seconds before an event whose attempt could not be written ahead comes back (nothing was sent)."""
_WARN_EVERY: Final = 5.0


def position(msg: Msg) -> tuple[int, int]:
    """(delivery count, stream sequence) of a JetStream message, from its reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``;
    nats-py's ``Msg.metadata`` parses every field (and a datetime) into
    dataclasses, a few percent of the worker's CPU for the two it needs. Other
    layouts (domains, accounts) go through it.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS":
        return int(tokens[4]), int(tokens[5])
    meta = msg.metadata
    return meta.num_delivered, meta.sequence.stream


class SubscriptionLoop:
    """The deliveries of one subscription: a continuous pull with a window of ``max_in_flight``."""

    def __init__(self, worker: Worker, sub: Subscription) -> None:
        self.worker = worker
        self.sub = sub
        self.rules = rules_for(sub, worker.settings)
        """The subscription's rules (integration config, …), compiled once here (and on :meth:`update`)."""
        self.policy = RetryPolicy.from_settings(worker.settings, sub.retry_schedule)
        self._limit = in_flight_limit(sub, worker.settings)
        self._pull: ContinuousPull | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._gone_until = 0.0
        self._warned_at = -_WARN_EVERY
        self._unwritten = 0
        self._settling = asyncio.Semaphore(4 * self._limit)
        self._settle_tasks: set[asyncio.Task[None]] = set()
        self.throttle = worker.throttles.open(sub.id, sub.rate_limit)
        """The rate limit shared with the other workers, and the receiver's pauses (``_throttle.py``)."""
        # A delivery that waited for the limit is counted (stats, metrics) as throttled; it is still sent.
        self.throttle.on_throttled = lambda: self.worker.deliverer.skipped(self.sub, "throttled")

    @property
    def throttled(self) -> int:
        """Deliveries of this process that waited for the rate limit or a receiver's ``Retry-After``."""
        return self.throttle.throttled

    def update(self, sub: Subscription) -> None:
        """Take a changed subscription (URL, secret, headers, config) for the next deliveries."""
        self.rules = rules_for(sub, self.worker.settings)
        self.sub = sub
        self.policy = RetryPolicy.from_settings(self.worker.settings, sub.retry_schedule)
        self.throttle.reconfigure(sub.rate_limit)

    def start(self) -> None:
        self._task = asyncio.create_task(self._start(), name=f"turbohooks-sub-{self.sub.id.hex[:8]}")

    async def stop(self) -> None:
        """Stop pulling; let in-flight deliveries finish (and ack) within the attempt timeout."""
        self._stopping = True
        self.throttle.halt()  # deliveries waiting for their slot go back to the stream now, not after the timeout
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pull is not None:
            await self._pull.stop(timeout=self.worker.settings.webhook_timeout + 1)
        if self._settle_tasks:
            await asyncio.wait(set(self._settle_tasks), timeout=self.worker.settings.publish_timeout + 1)
        await self.worker.throttles.release(self.throttle)

    async def _start(self) -> None:
        settings = self.worker.settings
        while not self._stopping:
            try:
                await ensure_consumer(self.worker.js, settings, self.sub)
                window = self.throttle.window(self._limit)
                pull = ContinuousPull(
                    self.worker.nc, settings.stream_name, consumer_name(self.sub), self._deliver, window=window
                )
                await pull.start()
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: cannot start its consumer (%s); retrying", self.sub.id, exc)
                await asyncio.sleep(1.0)
                continue
            self._pull = pull
            self.throttle.on_change = self._resize
            return

    def _resize(self) -> None:
        """The rate or a pause changed: hold only what may go out soon (the rest waits in the stream)."""
        if self._pull is not None:
            self._pull.resize(self.throttle.window(self._limit))

    async def _deliver(self, msg: Msg) -> None:
        sub = self.sub
        deliverer = self.worker.deliverer
        delivered, stream_seq = position(msg)
        if time.monotonic() < self._gone_until:
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak()
            return
        try:
            event = decode_event(msg.data, subject=msg.subject)
        except EventValidationError as exc:
            await self._refuse(msg, stream_seq, str(exc))
            return
        try:
            attempted = await self._attempt(event, msg, attempt=delivered, stream_seq=stream_seq)
        except ThrottleHalted:
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak()  # stopping before its slot came: not sent, first in line for the next worker
            return
        except NATS_ERRORS as exc:
            # The attempt's record could not be written ahead (JetStream slow or away), so
            # nothing was sent: the event comes back after a short pause. An overloaded server
            # is an expected state, not a crash: one line, at most every few seconds (a full
            # traceback per event was 76 % of a falling-behind worker's CPU, py-spy).
            self._unwritten += 1
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY:
                _log.warning(
                    "subscription %s: %d attempt(s) not started, their record could not be written ahead (%s); "
                    "they come back in %.0f s",
                    sub.id,
                    self._unwritten,
                    exc.__class__.__name__,
                    _UNWRITTEN_DELAY,
                )
                self._warned_at, self._unwritten = now, 0
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak(delay=_UNWRITTEN_DELAY)
            return
        if isinstance(attempted, Skip):
            if counted(attempted.reason):
                # Counted for the stats; the batch holding the count acknowledges the event.
                deliverer.skipped(sub, attempted.reason, msg)
            else:
                await msg.ack()
            return
        self.throttle.observe_attempt(attempted.record, self.rules.integration, cap=self.policy.retry_after_cap)
        settle: Callable[[], Awaitable[None]]
        match attempted.outcome:
            case Delivered():
                # The common case: the attempts batch that stores the record
                # acknowledges the event, and the HTTP slot is free now.
                if _log.isEnabledFor(logging.DEBUG):
                    log_attempt(_log, attempted.record)
                deliverer.batcher.record_and_ack(attempted.record, msg, now=sub.ordering == "strict")
                return
            case Retry(delay=delay):
                settle = functools.partial(msg.nak, delay=delay)
            case Dead(reason=reason):
                settle = functools.partial(self._bury, msg, stream_seq, sub, attempted.record, reason)
            case Gone():
                # The recorder disables the subscription; until its status arrives, do not
                # hammer the receiver (held before the slot frees). The event stays, first
                # in line: a disabled subscription keeps its backlog.
                self._gone_until = time.monotonic() + _GONE_HOLD
                if self._pull is not None:
                    self._pull.hold(_GONE_HOLD)
                settle = msg.nak
        log_attempt(_log, attempted.record)
        # The HTTP slot is free once the answer is in: recording (an fsynced
        # write shared by a batch) and settling the event go on in the
        # background, bounded, so the window keeps receivers busy.
        await self._settling.acquire()
        task = asyncio.create_task(self._settle(stream_seq, attempted.record, settle))
        self._settle_tasks.add(task)
        task.add_done_callback(self._settled)

    async def _attempt(self, event: Event, msg: Msg, *, attempt: int, stream_seq: int) -> Attempted | Skip:
        """One live attempt of ``event`` (every ordering mode): the subscription's rules, retry policy, rate limit.

        The trace continues the one in ``msg``'s headers; a wait for the rate limit keeps ``msg``
        in progress. ``ThrottleHalted`` when the loop stops before its slot came (nothing sent).
        """
        return await self.worker.deliverer.attempt(
            self.sub,
            self.rules,
            event,
            msg.data,
            attempt=attempt,
            trigger="live",
            stream_seq=stream_seq,
            policy=self.policy,
            trace=msg.headers,
            admit=functools.partial(self.throttle.acquire, msg.in_progress),
        )

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settle_tasks.discard(task)
        self._settling.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("subscription %s: settling crashed: %r", self.sub.id, exc, exc_info=exc)

    async def _settle(self, stream_seq: int, record: AttemptRecord, settle: Callable[[], Awaitable[None]]) -> None:
        try:
            await self.worker.deliverer.record(record)
            await settle()
        except NATS_ERRORS as exc:
            # Unacknowledged: JetStream redelivers after ack_wait, so nothing is lost.
            _log.warning("subscription %s: could not settle seq %s (%s)", self.sub.id, stream_seq, exc)

    async def _bury(self, msg: Msg, stream_seq: int, sub: Subscription, record: AttemptRecord, reason: str) -> None:
        _log.info("dead letter: the event's attempts ran out", extra={**attempt_fields(record), "reason": reason})
        await self.worker.deliverer.dead_letter(sub, msg.data, stream_seq, record, reason)
        await msg.ack()

    async def _refuse(self, msg: Msg, stream_seq: int, reason: str) -> None:
        """A message that is not a deliverable event: to the dead letters with why, then terminated.

        Until the letter is stored the message stays unacknowledged (redelivered after
        ``ack_wait``), so a refused message is never lost, only set aside.
        """
        sub = self.sub
        _log.error(
            "subscription %s: refusing the message at seq %s (dead-lettered): %s",
            sub.id,
            stream_seq,
            reason,
            extra={"subscription_id": sub.id, "stream_seq": stream_seq, "error": reason},
        )
        try:
            await self.worker.deliverer.refuse(
                sub, msg.data, msg.subject, stream_seq, reason, max_payload=self.worker.nc.max_payload
            )
            await msg.term()
        except NATS_ERRORS as exc:
            _log.warning("subscription %s: could not dead-letter seq %s (%s); it comes again", sub.id, stream_seq, exc)
            return
        self.worker.metrics.delivery(sub.integration, "dead", subscription_id=sub.id)
