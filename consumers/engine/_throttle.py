"""Rate limits shared by every worker copy, and the receiver's own throttling (429, 503 + ``Retry-After``).

One KV bucket (``turbohooks_throttle``) holds two keys per subscription:

``slots.<id>``  the next free send time (wall clock, seconds): a GCRA "theoretical
                arrival time". A worker claims the next ``n`` slots (what 100 ms at
                the current rate holds, at least one) with one compare-and-set on
                the key's revision, then releases its waiting deliveries at those
                times. Under contention a claim retries on the fresh value; the
                next free time only ever moves by ``n / rate`` per claim, so the
                rate holds whatever the number of workers, and whatever their
                clocks say while there is a backlog. Nothing is locked: a worker
                that dies loses at most its one claim (100 ms of slots), and an
                idle subscription earns no credit (``max(now, next free)``): no
                burst after a quiet spell. The value carries a generation (the
                last cut, step or pause end): slots claimed before it were spaced
                for another rate or never used, and the first claim after it
                starts from now.
``state.<id>``  what the receiver asked for (:class:`ThrottleState`): ``paused_until``
                (a 429 or 503 with ``Retry-After``) and, after repeated 429s, an
                effective ``rate`` below the configured one (or below the rate
                observed, for a subscription without a limit) that climbs back
                by ``ceiling / TURBOHOOKS_THROTTLE_RECOVERY`` per second of 2xx
                answers. Every worker watches these keys, so a pause or a cut
                seen by one applies to all within a round trip.

A delivery waits for its slot *before* its attempt (held in the subscription's
pull window, which shrinks to what one second at the rate needs), telling
JetStream it is in progress while it waits: over the limit, events wait in the
stream, in order, never redelivered, nothing counted as failed. A subscription
without a limit and without a cut never touches the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from integrations import Integration
from streams import NATS_ERRORS, Settings, open_bucket

from .._messages import AttemptRecord, RateLimit

__all__ = ("THROTTLE_BUCKET", "Throttle", "ThrottleHalted", "ThrottleState", "Throttles")

_log = logging.getLogger("turbohooks.throttle")

THROTTLE_BUCKET: Final = "turbohooks_throttle"
_CLAIM_SPAN: Final = 0.1
"""Seconds of slots one claim takes: KV traffic is at most ~10 claims/s per subscription, whatever the rate."""
_WINDOW_SPAN: Final = 1.0
"""Seconds of deliveries a rate-limited worker holds in hand (its pull window): the rest wait in the stream."""
_CUT_INTERVAL: Final = 1.0
"""A 429 halves the rate at most once a second: the answers to requests sent before a cut do not cut again."""
_FLOOR_SHARE: Final = 64.0
"""The effective rate is never cut below its ceiling / 64 (six halvings)."""
_WRITE_TRIES: Final = 20

Keepalive = Callable[[], Awaitable[None]]


class ThrottleHalted(Exception):
    """The subscription's loop is stopping: a delivery still waiting for its slot is not sent (nak it)."""


class ThrottleState(msgspec.Struct, frozen=True, omit_defaults=True):
    """The shared state of one subscription's throttling (``state.<id>``)."""

    paused_until: float = 0.0
    """No delivery before this (wall clock, seconds): a ``Retry-After``."""
    rate: float | None = None
    """Deliveries per second after cuts; ``None``: the configured limit (or none)."""
    ceiling: float | None = None
    """What ``rate`` climbs back to: the configured limit, or the rate observed when an unlimited one was cut."""
    changed_at: float = 0.0
    """When ``rate`` last changed (a cut or a step back up)."""


_encoder: Final = msgspec.json.Encoder()
_state_decoder: Final = msgspec.json.Decoder(ThrottleState)


class Throttle:
    """One subscription's limit in one worker: :meth:`acquire` before each attempt, :meth:`observe` after."""

    def __init__(
        self,
        subscription_id: uuid.UUID,
        limit: RateLimit | None,
        *,
        kv: Callable[[], Awaitable[KeyValue]],
        recovery: float,
        keepalive_every: float,
    ) -> None:
        self.key = subscription_id.hex
        self.configured = limit.per_second if limit is not None else None
        self._kv = kv
        self._recovery = recovery
        self._keepalive_every = keepalive_every
        self.state = ThrottleState()
        self.throttled = 0
        """Deliveries that waited for the rate limit or a receiver's pause (this process)."""
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._tat = 0.0
        self._generation = 0.0
        self._claimed_rate = 0.0
        self._revision: int | None = None
        self._writing: asyncio.Task[None] | None = None
        self._wanted: list[Callable[[ThrottleState, float], ThrottleState | None]] = []
        self._last_ok = 0.0
        self._last_cut = 0.0
        self._second_start = time.monotonic()
        self._second_count = 0
        self._observed = 0.0
        self._resume: asyncio.TimerHandle | None = None
        self._halted = False
        self._change = asyncio.Event()
        """Set (and replaced) when the rate or the pause changes: waits for a slot start over."""
        self.on_change: Callable[[], None] | None = None
        """Called when the effective rate or the pause changes (the loop resizes its pull window)."""
        self.on_throttled: Callable[[], None] | None = None
        """Called for each delivery that waited (the loop counts it in the stats and the metrics)."""

    # -- what the loop asks -------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """Deliveries per second now (shared by every worker); ``None``: unlimited."""
        if self.state.rate is not None:
            return self.state.rate if self.configured is None else min(self.state.rate, self.configured)
        return self.configured

    def window(self, limit: int) -> int:
        """The pull window for ``limit`` deliveries in flight: one second at the rate, one while paused."""
        if self.state.paused_until > time.time():
            return 1
        rate = self.rate
        if rate is None:
            return limit
        return max(1, min(limit, math.ceil(rate * _WINDOW_SPAN)))

    def reconfigure(self, limit: RateLimit | None) -> None:
        """The subscription's configured limit changed."""
        configured = limit.per_second if limit is not None else None
        if configured != self.configured:
            self.configured = configured
            self._slots.clear()
            self._changed()

    async def acquire(self, keepalive: Keepalive | None = None) -> None:
        """Return when one more delivery may go out (calling ``keepalive`` while waiting long)."""
        waited = False
        while True:
            if self._halted:
                raise ThrottleHalted(self.key)
            pause = self.state.paused_until - time.time()
            if pause > 0:
                waited = True
                await self._sleep(pause, keepalive)
                continue
            rate = self.rate
            if rate is None:
                break
            slot = await self._slot(rate, keepalive)
            if slot is None:
                continue  # paused, or the rate changed, while waiting for the claim in hand
            delay = slot - time.time()
            if delay > 0:
                waited = True
                if not await self._sleep(delay, keepalive):
                    continue  # the rate changed meanwhile: this slot was spaced for the old one
            if self.state.paused_until <= time.time():
                break
        if waited:
            self.throttled += 1
            if self.on_throttled is not None:
                self.on_throttled()
        self._count()

    def backlog(self) -> float:
        """Seconds before a delivery asked now could go out, as this worker last saw it (0: at once)."""
        now = time.time()
        wait = self.state.paused_until - now
        if self.rate is not None and self._revision is not None:
            wait = max(wait, self._tat - now)
        return max(wait, 0.0)

    def observe(self, status: int | None, retry_after: float | None, *, cap: float) -> None:
        """One answer: a ``Retry-After`` on 429/503 pauses every worker; a 429 cuts the rate; a 2xx may step it up."""
        now = time.time()
        if status in (429, 503) and retry_after is not None and retry_after > 0:
            until = now + min(retry_after, cap)
            if until > self.state.paused_until + 0.05:
                self._apply(msgspec.structs.replace(self.state, paused_until=until))
                self._write(lambda s, _at: _paused(s, until))
        if status == 429:
            if now - self._last_cut >= _CUT_INTERVAL:
                self._last_cut = now
                base = self.rate or max(self._observed, 1.0)
                self._write(lambda s, at: _cut(s, at, self.configured, base))
        elif (
            status is not None
            and 200 <= status < 300
            and self.state.rate is not None
            and now - self._last_ok >= 1.0
            and now - self._last_cut >= 1.0
        ):
            self._last_ok = now
            self._write(lambda s, at: _step(s, at, self._recovery))

    def observe_attempt(self, record: AttemptRecord, integration: Integration[Any], *, cap: float) -> None:
        """:meth:`observe` one attempt's answer (its ``Retry-After`` read the integration's way)."""
        status = record.response_code
        retry_after = None
        if status in (429, 503):
            retry_after = integration.retry_after(status, record.response_headers, record.response_body or "")
        self.observe(status, retry_after, cap=cap)

    def apply(self, state: ThrottleState) -> None:
        """A state seen in the bucket (another worker's write, or ours coming back)."""
        self._apply(state)

    def halt(self) -> None:
        """Stop waiting: deliveries waiting for a slot or a pause raise :class:`ThrottleHalted` (the loop stops)."""
        self._halted = True
        self._changed()

    async def close(self) -> None:
        self.halt()
        if self._resume is not None:
            self._resume.cancel()
        if self._writing is not None and not self._writing.done():
            self._writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing

    # -- inside -------------------------------------------------------------------

    def _apply(self, state: ThrottleState) -> None:
        before = (self.rate, self.state.paused_until)
        self.state = state
        if (self.rate, state.paused_until) != before:
            self._slots.clear()  # slots claimed at the old rate; the next claim is at the new one
            self._changed()
            pause = state.paused_until - time.time()
            if pause > 0:  # the window opens again when the pause ends
                if self._resume is not None:
                    self._resume.cancel()
                self._resume = asyncio.get_running_loop().call_later(pause, self._changed)

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()
        if self.on_change is not None:
            self.on_change()

    def _count(self) -> None:
        now = time.monotonic()
        self._second_count += 1
        elapsed = now - self._second_start
        if elapsed >= 1.0:
            self._observed = self._second_count / elapsed
            self._second_start, self._second_count = now, 0

    async def _sleep(self, seconds: float, keepalive: Keepalive | None) -> bool:
        """Wait ``seconds``; ``False`` if the rate or the pause changed first (the wait is to be recomputed)."""
        # JetStream redelivers a message unacknowledged for ack_wait: while it waits
        # for its slot, the worker says it is still working on it.
        changed = self._change
        while seconds > 0:
            step = min(seconds, self._keepalive_every)
            try:
                await asyncio.wait_for(changed.wait(), step)
            except TimeoutError:
                pass
            else:
                return False
            seconds -= step
            if seconds > 0 and keepalive is not None:
                with contextlib.suppress(*NATS_ERRORS):
                    await keepalive()
        return True

    async def _slot(self, rate: float, keepalive: Keepalive | None) -> float | None:
        async with self._lock:  # FIFO: the delivery that asked first gets the earlier slot
            now = time.time()
            if self._halted or self.rate != rate or self.state.paused_until > now:
                return None
            while self._slots and self._slots[0] < now - _CLAIM_SPAN:
                self._slots.popleft()  # held while nobody needed it: not saved up for a burst
            while not self._slots:
                try:
                    await self._claim(rate)
                except (*NATS_ERRORS, TimeoutError) as exc:
                    # No bucket to ask: wait one slot's length locally rather than send unlimited.
                    _log.warning("rate limit of %s: cannot claim slots (%s); pacing locally", self.key, exc)
                    await self._sleep(max(1.0 / rate, 0.1), keepalive)
                    return time.time()
            return self._slots.popleft()

    async def _claim(self, rate: float) -> None:
        kv = await self._kv()
        key = f"slots.{self.key}"
        count = max(1, int(rate * _CLAIM_SPAN))
        # A claim's generation: the last change of the rate, or the end of the last pause.
        generation = max(self.state.changed_at, self.state.paused_until)
        for _ in range(_WRITE_TRIES * 5):
            if self._revision is None:
                try:
                    entry = await kv.get(key)
                    self._tat, self._generation, self._claimed_rate = _slots_value(entry.value)
                    self._revision = entry.revision or 0
                except (KeyNotFoundError, KeyDeletedError):
                    self._tat, self._generation, self._claimed_rate, self._revision = 0.0, 0.0, rate, 0
            # Slots claimed before the rate last changed were spaced for the old rate, and
            # those claimed before a pause were never used: the first claim after either
            # starts from now, not after them.
            now = time.time()
            tat = self._tat if self._generation >= generation else 0.0
            if self._claimed_rate != rate:
                # The configured limit changed (every worker sees it through the registry):
                # the next claim waits at most one interval of the new rate.
                tat = min(tat, now + 1.0 / rate)
            start = max(now, tat)
            end = start + count / rate
            try:
                encoded = f"{end!r} {max(generation, self._generation)!r} {rate!r}".encode()
                if self._revision == 0:
                    revision = await kv.create(key, encoded)
                else:
                    revision = await kv.update(key, encoded, last=self._revision)
            except KeyWrongLastSequenceError:
                self._revision = None  # another worker claimed meanwhile: read its value, claim after it
                continue
            self._tat, self._revision, self._generation = end, revision, max(generation, self._generation)
            self._claimed_rate = rate
            self._slots.extend(start + i / rate for i in range(count))
            return
        raise TimeoutError("no slot claimed: the key changed on every try")

    def _write(self, change: Callable[[ThrottleState, float], ThrottleState | None]) -> None:
        """Apply ``change`` to the shared state (compare-and-set, in the background; one writer at a time)."""
        self._wanted.append(change)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._flush(), name=f"turbohooks-throttle-{self.key[:8]}")

    async def _flush(self) -> None:
        while self._wanted:
            changes, self._wanted = self._wanted, []
            try:
                await self._store(changes)
            except NATS_ERRORS as exc:
                _log.warning("rate limit of %s: cannot share its state (%s)", self.key, exc)

    async def _store(self, changes: list[Callable[[ThrottleState, float], ThrottleState | None]]) -> None:
        kv = await self._kv()
        key = f"state.{self.key}"
        for _ in range(_WRITE_TRIES):
            try:
                entry = await kv.get(key)
                current, revision = _state_decoder.decode(entry.value or b"{}"), entry.revision or 0
            except (KeyNotFoundError, KeyDeletedError):
                current, revision = ThrottleState(), 0
            state = current
            now = time.time()
            for change in changes:
                state = change(state, now) or state
            if state == current:
                self._apply(current)
                return
            try:
                encoded = _encoder.encode(state)
                if revision == 0:
                    await kv.create(key, encoded)
                else:
                    await kv.update(key, encoded, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another worker wrote first: apply our changes to its state
            self._apply(state)
            return


def _slots_value(value: bytes | None) -> tuple[float, float, float]:
    """``(next free time, generation, rate)`` of a ``slots.<id>`` value: ``b"<time> <generation> <rate>"``."""
    parts = (value or b"").split()
    try:
        numbers = [float(part) for part in parts[:3]]
    except ValueError:
        return 0.0, 0.0, 0.0
    numbers += [0.0] * (3 - len(numbers))
    return numbers[0], numbers[1], numbers[2]


def _paused(state: ThrottleState, until: float) -> ThrottleState | None:
    if until <= state.paused_until:
        return None
    return msgspec.structs.replace(state, paused_until=until)


def _cut(state: ThrottleState, now: float, configured: float | None, base: float) -> ThrottleState | None:
    if now - state.changed_at < _CUT_INTERVAL and state.rate is not None:
        return None  # another worker cut within the second: one cut for the same burst of 429s
    ceiling = state.ceiling or configured or base
    current = state.rate if state.rate is not None else min(base, ceiling)
    rate = max(current / 2, ceiling / _FLOOR_SHARE)
    _log.info("rate of a subscription cut to %.2f/s after a 429", rate)
    return ThrottleState(paused_until=state.paused_until, rate=rate, ceiling=ceiling, changed_at=now)


def _step(state: ThrottleState, now: float, recovery: float) -> ThrottleState | None:
    if state.rate is None or state.ceiling is None or now - state.changed_at < 1.0:
        return None
    rate = state.rate + state.ceiling / max(recovery, 1.0) * min(now - state.changed_at, 2.0)
    if rate >= state.ceiling:  # back to the configured rate (or none)
        return ThrottleState(paused_until=state.paused_until, changed_at=now)
    return msgspec.structs.replace(state, rate=rate, changed_at=now)


class Throttles:
    """The worker's throttles, one per running subscription, and the watch that keeps them in step."""

    def __init__(self, settings: Settings, js: JetStreamContext, *, keepalive_every: float) -> None:
        self.settings = settings
        self.js = js
        self._keepalive_every = keepalive_every
        self._by_key: dict[str, Throttle] = {}
        self._states: dict[str, ThrottleState] = {}
        """The last state seen of every key: a loop restarted (new window) starts from it."""
        self._kv: KeyValue | None = None
        self._opening = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    def open(self, subscription_id: uuid.UUID, limit: RateLimit | None) -> Throttle:
        """The throttle of one subscription (kept current by the watch until :meth:`release`)."""
        throttle = Throttle(
            subscription_id,
            limit,
            kv=self._bucket,
            recovery=self.settings.throttle_recovery,
            keepalive_every=self._keepalive_every,
        )
        self._by_key[throttle.key] = throttle
        if (known := self._states.get(throttle.key)) is not None:
            throttle.state = known
        if self._watch is None:
            self._watch = asyncio.create_task(self._follow(), name="turbohooks-throttle-watch")
        return throttle

    async def release(self, throttle: Throttle) -> None:
        if self._by_key.get(throttle.key) is throttle:
            del self._by_key[throttle.key]
        await throttle.close()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for throttle in list(self._by_key.values()):
            await throttle.close()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            async with self._opening:
                if self._kv is None:
                    self._kv = await open_bucket(
                        self.js, self.settings, THROTTLE_BUCKET, "turbohooks: rate-limit slots and receivers' pauses"
                    )
        return self._kv

    async def _follow(self) -> None:
        backoff = 0.5
        while True:
            try:
                kv = await self._bucket()
                watcher = await kv.watch("state.*")
                try:
                    backoff = 0.5
                    async for entry in watcher:
                        if entry is None:
                            continue
                        key = entry.key.removeprefix("state.")
                        state = ThrottleState()
                        if entry.operation not in ("DEL", "PURGE") and entry.value:
                            try:
                                state = _state_decoder.decode(entry.value)
                            except (msgspec.DecodeError, msgspec.ValidationError):
                                continue
                        self._states[key] = state
                        if (throttle := self._by_key.get(key)) is not None:
                            throttle.apply(state)
                finally:
                    with contextlib.suppress(*NATS_ERRORS):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except NATS_ERRORS as exc:
                # A server whose worker user may not use the bucket (an older auth.conf) says so at
                # each try: asked again less and less often, up to once a minute.
                _log.warning("throttle watch interrupted (%s); watching again in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
