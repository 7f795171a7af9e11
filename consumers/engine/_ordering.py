"""Per-key order (``ordering: entity``): one event at a time per key, keys in parallel, one holder at a time.

``strict`` needs nothing here: its consumer lets one event out at a time
(``max_ack_pending`` 1, :func:`~consumers.subscriptions.max_ack_pending`), and a
retry waits out its delay on the server while staying outstanding, so nothing
later reaches any worker copy until it is acknowledged or dead-lettered.

``entity`` cannot be kept by the server (it has no per-key limit), so:

* **One holder.** The subscription's loop delivers only while it holds the
  subscription's :class:`~consumers.engine._lease.Lease`; other worker copies
  stand by and take over when it is released (a graceful stop) or expires (a
  kill -9: the lease outlives ``ack_wait``, so the dead holder's events can all
  be redelivered by then).
* **Per-key turns** (:class:`KeyedTurns`). Events are held in hand (up to
  :func:`~consumers.subscriptions.held_limit`, touched with ``in_progress`` so
  JetStream does not hand them out again) and sent one at a time per key, in
  stream order; other keys go on meanwhile.
* **Retries in place.** A retry keeps its event, and so its key, in hand: the
  loop waits out the delay (touching the event) and tries again. A ``nak`` with
  a delay would let the event leave, and a new holder after a crash could not
  know which keys it blocks. The attempt number is JetStream's delivery count
  plus the retries made in place, so after a crash an event may get a few more
  attempts than the schedule, never fewer.
* **The next event of a key starts once the previous one is acknowledged**
  (``ack_sync``: the server confirmed), so an older event never comes after a
  newer one was acknowledged.
* **A new holder sorts first.** JetStream redelivers the previous holder's
  events first, but in the order their ``ack_wait`` ran out, not in stream
  order. The new holder reads how many are outstanding, holds everything it
  receives until that many redeliveries have arrived (or ``ack_wait`` has
  passed), then lets each key go from its lowest stream sequence.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

import msgspec
from nats.aio.msg import Msg

from streams import NATS_ERRORS, Event, EventValidationError, decode_event

from .._messages import AttemptRecord, Subscription
from ..rules import Skip, counted
from ..subscriptions._consumer import ack_wait, consumer_name, ensure_consumer, held_limit
from ._lease import RENEW_EVERY, Lease
from ._logging import log_attempt
from ._loop import _GONE_HOLD, SubscriptionLoop, position
from ._outcome import Dead, Delivered, Gone, Retry
from ._pull import ContinuousPull
from ._throttle import ThrottleHalted

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ("DEFAULT_ORDERING_KEY", "EntityLoop", "Key", "KeyedTurns", "key_of", "lease_name", "subscription_loop")

_log = logging.getLogger("turbohooks.worker")

DEFAULT_ORDERING_KEY: Final = "entity_id"
Key = str | None
"""An event's ordering key; ``None`` when the path finds nothing (those events share one queue)."""

_TICK: Final = 0.5
"""Seconds between the holder's checks: renew the lease, touch what is held."""
_STANDBY_POLL: Final = 1.0
"""Seconds between a standby's attempts to take the lease."""
_PAUSE: Final = 1.0
"""Seconds before trying a step again when NATS did not answer."""
_ACK_TRIES: Final = 3
_CRASH_PAUSE: Final = 5.0
"""Seconds before trying again an attempt that raised a bug (logged each time; the key keeps its order)."""


def key_of(event: Event, path: tuple[str, ...]) -> Key:
    """The value at the dotted ``path`` of the envelope, as text; ``None`` if a part is missing."""
    value: object = event
    for part in path:
        if isinstance(value, msgspec.Struct):
            value = getattr(value, part, None) if part in value.__struct_fields__ else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def lease_name(sub: Subscription) -> str:
    """The subscription's key in the leases bucket."""
    return f"order.{sub.id.hex}"


class _Held:
    """An event in hand: its latest message (a second copy replaces it), when it was last touched."""

    __slots__ = ("delivered", "msg", "seq", "touched")

    def __init__(self, msg: Msg, seq: int, delivered: int) -> None:
        self.msg = msg
        self.seq = seq
        self.delivered = delivered
        self.touched = time.monotonic()


class _KeyState:
    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.waiting: list[int] = []
        """Stream sequences waiting for the key, sorted."""
        self.running: int | None = None


class KeyedTurns:
    """The events one holder has in hand, and whose turn it is for each key.

    ``expected`` is how many events were outstanding when the lease was taken:
    no turn is given until that many redeliveries arrived or ``gather`` seconds
    passed (see the module's docstring).
    """

    def __init__(self, expected: int = 0, gather: float = 0.0) -> None:
        self.held: dict[int, _Held] = {}
        self._keys: dict[Key, _KeyState] = {}
        self._heads: dict[int, asyncio.Future[None]] = {}
        self._gate = asyncio.Event()
        self._expected = expected
        self._closed = asyncio.Event()
        self.nak_on_close = False
        """On close: give the events back at once (a graceful stop) or leave them (the lease was lost)."""
        self._timer: asyncio.TimerHandle | None = None
        if expected <= 0:
            self._gate.set()
        else:
            self._timer = asyncio.get_running_loop().call_later(gather, self._open)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def gathering(self) -> bool:
        return not self._gate.is_set()

    def _open(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._gate.set()

    def hold(self, msg: Msg, seq: int, delivered: int) -> _Held | None:
        """Take ``msg`` in hand; ``None`` if its event already is (its newer copy is kept, to settle with)."""
        held = self.held.get(seq)
        if held is not None:
            held.msg, held.touched = msg, time.monotonic()
            return None
        held = self.held[seq] = _Held(msg, seq, delivered)
        if delivered > 1 and self.gathering:
            self._expected -= 1
            if self._expected <= 0:
                self._open()
        return held

    async def turn(self, key: Key, seq: int) -> bool:
        """Wait until ``seq`` is the lowest event of ``key`` in hand and none of ``key`` runs; ``False`` if closed."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        bisect.insort(state.waiting, seq)
        await self._gate.wait()
        while not self.closed and (state.running is not None or state.waiting[0] != seq):
            head = self._heads[seq] = asyncio.get_running_loop().create_future()
            await head
        if self.closed:
            return False
        state.waiting.remove(seq)
        state.running = seq
        return True

    def done(self, key: Key, seq: int) -> None:
        """``seq`` is settled (or given up): the next event of ``key`` may go."""
        self.held.pop(seq, None)
        state = self._keys.get(key)
        if state is None:
            return
        if state.running == seq:
            state.running = None
        elif seq in state.waiting:
            state.waiting.remove(seq)
        if state.running is None:
            if not state.waiting:
                del self._keys[key]
                return
            head = self._heads.pop(state.waiting[0], None)
            if head is not None and not head.done():
                head.set_result(None)

    def close(self, *, nak: bool) -> None:
        """No more turns; waiting and sleeping deliveries give up (``nak``: their events go back at once)."""
        if self.closed:
            return
        self.nak_on_close = nak
        self._closed.set()
        self._open()
        for head in self._heads.values():
            if not head.done():
                head.set_result(None)
        self._heads.clear()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; ``False`` if closed meanwhile."""
        if self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)
            return False
        return True

    async def give_back(self, held: _Held) -> None:
        """After a close: a graceful stop hands the event back now; a lost lease leaves it to ``ack_wait``."""
        if self.nak_on_close:
            with contextlib.suppress(*NATS_ERRORS):
                await held.msg.nak()

    async def touch(self, older_than: float) -> None:
        """``in_progress`` for every event held longer than ``older_than`` since it was last touched."""
        now = time.monotonic()
        for held in list(self.held.values()):
            if now - held.touched >= older_than:
                held.touched = now
                with contextlib.suppress(*NATS_ERRORS):
                    await held.msg.in_progress()


class EntityLoop(SubscriptionLoop):
    """The deliveries of one ``entity``-ordered subscription (see the module's docstring)."""

    def __init__(self, worker: Worker, sub: Subscription) -> None:
        super().__init__(worker, sub)
        self._path = tuple((sub.ordering_key or DEFAULT_ORDERING_KEY).split("."))
        self._turns = KeyedTurns()
        self._sending = asyncio.Semaphore(self._limit)
        self._lease: Lease | None = None

    def update(self, sub: Subscription) -> None:
        super().update(sub)
        self._path = tuple((sub.ordering_key or DEFAULT_ORDERING_KEY).split("."))

    @property
    def holds_lease(self) -> bool:
        """This copy is the one delivering the subscription now."""
        return self._lease is not None and self._lease.held

    async def _start(self) -> None:
        settings = self.worker.settings
        ensured = False
        while not self._stopping:
            lease = self._lease
            try:
                if not ensured:
                    await ensure_consumer(self.worker.js, settings, self.sub)
                    ensured = True
                if lease is None:
                    lease = self._lease = await Lease.open(self.worker.js, settings, lease_name(self.sub))
                if not await lease.acquire():
                    await asyncio.sleep(_STANDBY_POLL)
                    continue
                info = await self.worker.js.consumer_info(settings.stream_name, consumer_name(self.sub))
                turns = KeyedTurns(info.num_ack_pending, gather=ack_wait(settings) + 1.0)
                self._turns = turns
                pull = ContinuousPull(
                    self.worker.nc,
                    settings.stream_name,
                    consumer_name(self.sub),
                    self._deliver,
                    window=held_limit(self.sub, settings),
                )
                await pull.start()
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: cannot start its ordered delivery (%s); retrying", self.sub.id, exc)
                if lease is not None:
                    await lease.release()
                await asyncio.sleep(_PAUSE)
                continue
            self._pull = pull
            _log.info("subscription %s: this worker delivers it (entity order)", self.sub.id)
            await self._keep(lease, turns)
            # The lease is lost (or could not be renewed in time): someone else may
            # hold it now, so stop at once and leave the events to ack_wait.
            _log.warning("subscription %s: lost its lease; standing by", self.sub.id)
            lease.abandon()
            await pull.close_inbox()
            turns.close(nak=False)
            await pull.stop(timeout=settings.webhook_timeout + 1)
            self._pull = None
            ensured = False

    async def _keep(self, lease: Lease, turns: KeyedTurns) -> None:
        """Renew the lease and touch what is held until the lease is lost (cancelled by :meth:`stop`)."""
        touch_every = ack_wait(self.worker.settings) / 4
        renew_at = time.monotonic() + RENEW_EVERY
        while True:
            await asyncio.sleep(_TICK)
            if time.monotonic() >= renew_at:
                try:
                    if not await lease.renew():
                        return
                    renew_at = time.monotonic() + RENEW_EVERY
                except NATS_ERRORS as exc:
                    _log.warning("subscription %s: could not renew its lease (%s)", self.sub.id, exc)
                    if not lease.valid:
                        return
            await turns.touch(touch_every)

    async def stop(self) -> None:
        """Stop: waiting events go back at once, sends in flight finish, then the lease goes to a standby."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # The inbox first: events given back then go to a standby, not to this copy again.
        if self._pull is not None:
            await self._pull.close_inbox()
        self._turns.close(nak=True)
        if self._pull is not None:
            await self._pull.stop(timeout=self.worker.settings.webhook_timeout + 1)
            self._pull = None
        if self._lease is not None:
            await self._lease.release()

    async def _deliver(self, msg: Msg) -> None:
        turns = self._turns
        delivered, seq = position(msg)
        held = turns.hold(msg, seq, delivered)
        if held is None:
            return  # a second copy of an event in hand (its ack_wait ran out): the one in hand settles both
        key: Key = None
        try:
            try:
                event = decode_event(msg.data, subject=msg.subject)
            except EventValidationError as exc:
                await self._refuse(msg, seq, str(exc))
                return
            key = key_of(event, self._path)
            if await turns.turn(key, seq):
                await self._send_in_turn(turns, held, event)
            else:
                await turns.give_back(held)
        finally:
            turns.done(key, seq)

    async def _may_send(self, turns: KeyedTurns) -> bool:
        """Wait while the receiver said 410 or the lease is not renewed; ``False`` once closed."""
        while not turns.closed:
            if self._lease is None or not self._lease.valid:
                await turns.sleep(_TICK)
                continue
            wait = self._gone_until - time.monotonic()
            if wait > 0:
                await turns.sleep(wait)
                continue
            return True
        return False

    async def _send_in_turn(self, turns: KeyedTurns, held: _Held, event: Event) -> None:
        """Attempt the event until it is delivered or dead, retrying in place; its key waits meanwhile."""
        attempt = held.delivered
        while True:
            if not await self._may_send(turns):
                await turns.give_back(held)
                return
            try:
                async with self._sending:
                    attempted = await self._attempt(event, held.msg, attempt=attempt, stream_seq=held.seq)
            except ThrottleHalted:  # stopping before the rate limit's slot came: not sent
                await turns.give_back(held)
                return
            except NATS_ERRORS as exc:
                # Its record could not be written ahead, so it was not sent: the same attempt again.
                _log.warning("subscription %s: could not start seq %s (%s)", self.sub.id, held.seq, exc)
                await turns.sleep(_PAUSE)
                continue
            except Exception:  # noqa: BLE001  a bug must not let the key's next event overtake this one
                _log.exception("subscription %s: the attempt of seq %s crashed; its key waits", self.sub.id, held.seq)
                await turns.sleep(_CRASH_PAUSE)
                continue
            if isinstance(attempted, Skip):
                if counted(attempted.reason):
                    self.worker.deliverer.skipped(self.sub, attempted.reason)
                await self._finish(turns, held, None, None)
                return
            self.throttle.observe_attempt(attempted.record, self.rules.integration, cap=self.policy.retry_after_cap)
            log_attempt(_log, attempted.record)
            match attempted.outcome:
                case Delivered():
                    await self._finish(turns, held, attempted.record, None)
                    return
                case Dead(reason=reason):
                    await self._finish(turns, held, attempted.record, reason)
                    return
                case Retry(delay=delay):
                    if not await self._record(turns, attempted.record) or not await turns.sleep(delay):
                        await turns.give_back(held)
                        return
                case Gone():
                    # The recorder disables the subscription (this loop then stops); until
                    # then every key waits, the event first in line of its key.
                    self._gone_until = time.monotonic() + _GONE_HOLD
                    if not await self._record(turns, attempted.record):
                        await turns.give_back(held)
                        return
            attempt += 1

    async def _record(self, turns: KeyedTurns, record: AttemptRecord) -> bool:
        """Store the attempt's record, trying again while NATS does not answer; ``False`` if closed meanwhile.

        Without the batcher's linger: the key's next event waits for it.
        """
        while True:
            try:
                await self.worker.deliverer.batcher.record(record, now=True)
                return True
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: could not record seq %s (%s)", self.sub.id, record.stream_seq, exc)
                if not await turns.sleep(_PAUSE):
                    return False

    async def _finish(self, turns: KeyedTurns, held: _Held, record: AttemptRecord | None, dead: str | None) -> None:
        """Record, dead-letter if ``dead``, and acknowledge, confirmed by the server, before the key's next event."""
        if record is not None and not await self._record(turns, record):
            return
        while dead is not None and record is not None:
            try:
                await self.worker.deliverer.dead_letter(self.sub, held.msg.data, held.seq, record, dead)
                break
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: could not dead-letter seq %s (%s)", self.sub.id, held.seq, exc)
                if not await turns.sleep(_PAUSE):
                    return
        timeout = self.worker.settings.publish_timeout
        for _ in range(_ACK_TRIES):
            try:
                await held.msg.ack_sync(timeout=timeout)
                return
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: acknowledgement of seq %s unconfirmed (%s)", self.sub.id, held.seq, exc)
        # Unconfirmed three times (the connection is down, or the event was already
        # acknowledged): move on; an unacknowledged event comes back after ack_wait.


def subscription_loop(worker: Worker, sub: Subscription) -> SubscriptionLoop:
    """The loop that delivers ``sub`` the way its ``ordering`` says."""
    if sub.ordering == "entity":
        return EntityLoop(worker, sub)
    return SubscriptionLoop(worker, sub)
