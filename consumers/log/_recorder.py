"""The recorder: the single writer of the delivery log.

Workers never write SQL (several processes writing one SQLite file fail under
load); they publish each attempt to the internal attempts stream. The recorder
drains it in batches, writes each batch in one transaction, then acknowledges
it; a crash in between replays the batch, which the store ignores (attempt ids
are unique). It also acts on what the log shows: a subscription failing for
too long, or answered 410 Gone, is disabled; beside it, its :class:`~._prober.Prober`
probes the disabled ones and re-enables those whose receiver is back.

It acknowledges exactly what it stored: each message of the attempts stream
on its own (``AckPolicy.EXPLICIT``), once its records are in SQL, so a
recorder killed after a fetch leaves that batch to be handed out again, and
several recorders never settle each other's batches. A batch whose write fails
is kept in hand and written again, in place, with a growing pause (its
messages marked in progress so that they are not handed to another recorder
meanwhile), before anything more is fetched. A database outage (SQLite's lock held past
its busy timeout, PostgreSQL restarting) therefore delays the log, never
loses a record. Any other error writing a batch is retried once, then the
batch is written message by message, and a message that still fails is
parked on the dead-letter stream (``turbohooks.dlq.attempts``) with the
reason in its ``Turbohooks-Reason`` header, then acknowledged. So is a
message that does not decode as an attempt batch: kept, with why, never
dropped silently; and the loop never dies of one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from streams import (
    ATTEMPTS_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    NATS_ERRORS,
    RECORDER_CONSUMER,
    RECORDER_FETCH,
    DatabaseUnavailableError,
    Settings,
    ensure_recorder_consumer,
    recorder_consumer_config,
)

from .._messages import AttemptBatch, AttemptRecord, SkipCount
from ._database import DATABASE_OUTAGES, DATABASE_REFUSALS
from ._metrics import RecorderMetrics
from ._prober import Prober
from ._store import DeliveryStore

if TYPE_CHECKING:
    from ..subscriptions import SubscriptionService  # the service writes through this package's store

__all__ = ("PARKED_SUBJECT", "RECORDER_CONSUMER", "Recorder")

_log = logging.getLogger("turbohooks.recorder")

_decoder: Final = msgspec.json.Decoder(AttemptBatch)

PARKED_SUBJECT: Final = f"{DEAD_LETTER_SUBJECT_ROOT}.attempts"
"""Where the recorder parks attempts messages it cannot store: undecodable, or refused by the database."""

_RETRY_FIRST: Final = 0.5
_RETRY_MAX: Final = 5.0
"""Pauses between writes of a batch the database refused: doubling from the first to the last."""
_HEADROOM: Final = 4096
"""Bytes left under the server's max_payload for a parked message's headers."""
_LINGER: Final = 0.05
"""Seconds a fetch that came back short waits for more batches, written with it in one transaction.

Following live traffic, a fetch returns the one or two batches just published, and the
``pending`` record of an attempt and its answer landed in separate transactions: an INSERT,
then an UPDATE rewriting the row, and a commit each (SQLite rewrites every page a commit
touches). Waiting this long collects most answers with their pending records (one INSERT)
and shares the commit: half the recorder's CPU per delivery at ~1,800 deliveries/s. The log
lags by as much; the deliveries do not (workers wait for the attempts stream, never for SQL)."""
_GATHER: Final = RECORDER_FETCH * 2
"""Most attempt batches written in one transaction (the consumer lets 4 × ``RECORDER_FETCH`` be unacknowledged)."""


class _Undecodable(Exception):
    """A message of the attempts stream that is not an attempt batch."""


class Recorder:
    """Writes attempt outcomes to ``webhook_deliveries`` and disables failing subscriptions."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        deliveries: DeliveryStore,
        service: SubscriptionService,
        *,
        metrics: RecorderMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RecorderMetrics()
        """This recorder's Prometheus metrics (served by ``--metrics-port``, or by ``up``'s gateway)."""
        self.nc = nc
        self.js = nc.jetstream(timeout=settings.publish_timeout)
        self.deliveries = deliveries
        self.service = service
        self.recorded = 0
        self.parked = 0
        """Messages parked on the dead-letter stream (undecodable, or refused by the database)."""
        self.idle = asyncio.Event()
        """Set whenever the recorder has caught up with the attempts stream."""
        self.prober = Prober(settings, deliveries, service)
        """Probes the disabled subscriptions with auto_recover, beside the recording (self-healing endpoints)."""
        # In-progress marks go out well within the consumer's ack_wait.
        self._keepalive = (recorder_consumer_config().ack_wait or 30.0) / 3

    async def run(self, stop: asyncio.Event) -> None:
        """Record (and probe) until ``stop`` is set; the batch in hand is finished first (or left unacknowledged)."""
        prober = asyncio.create_task(self.prober.run(stop), name="turbohooks-prober")
        try:
            await self._record(stop)
        finally:
            if not stop.is_set():  # the recording ended of itself (cancelled): so does the prober
                prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _record(self, stop: asyncio.Event) -> None:
        psub = None
        while psub is None and not stop.is_set():
            try:
                await ensure_recorder_consumer(self.js)
                psub = await self.js.pull_subscribe_bind(durable=RECORDER_CONSUMER, stream=ATTEMPTS_STREAM)
            except NATS_ERRORS as exc:
                _log.warning("recorder: its consumer is unavailable (%s); retrying", exc)
                await _sleep(stop, 1.0)
        if psub is None:
            return
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.create_task(psub.fetch(RECORDER_FETCH, timeout=0.25))
                done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if fetch not in done:
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await fetch
                    break
                try:
                    msgs = fetch.result()
                except NATS_ERRORS:
                    msgs = []
                except Exception as exc:  # noqa: BLE001  the loop never dies of one fetch
                    _log.error("recorder: fetch failed (%r); fetching again", exc)
                    await _sleep(stop, 1.0)
                    msgs = []
                if not msgs:
                    self.idle.set()
                    continue
                self.idle.clear()
                await self._gather(psub, msgs)
                await self._store(msgs, stop)
        finally:
            stopper.cancel()
            with contextlib.suppress(*NATS_ERRORS):
                await psub.unsubscribe()

    async def _gather(self, psub: JetStreamContext.PullSubscription, msgs: list[Msg]) -> None:
        """Add to ``msgs`` what arrives within :data:`_LINGER`, up to :data:`_GATHER` batches."""
        deadline = time.monotonic() + _LINGER
        while len(msgs) < _GATHER:
            remaining = deadline - time.monotonic()
            if remaining <= 0.001:
                return
            try:
                msgs.extend(await psub.fetch(min(RECORDER_FETCH, _GATHER - len(msgs)), timeout=remaining))
            except NATS_ERRORS:
                return  # nothing more in time (or NATS away): what is in hand is written
            except Exception as exc:  # noqa: BLE001  the loop never dies of one fetch
                _log.error("recorder: fetch failed (%r); writing what is in hand", exc)
                return

    async def _store(self, msgs: Sequence[Msg], stop: asyncio.Event) -> bool:
        """Write ``msgs`` and acknowledge them, retrying in place; False if ``stop`` came first (not acknowledged)."""
        delay = _RETRY_FIRST
        failures = 0
        marked = time.monotonic()
        while True:
            try:
                await self._write(msgs)
                for msg in msgs:
                    await _ack(msg)
                return True
            except Exception as exc:  # noqa: BLE001  any error of one batch: retried, then isolated
                if _transient(exc):
                    # Held, not acknowledged, and nothing more fetched: the log keeps
                    # the stream's order, and the batch is not handed to another recorder.
                    _log.error(
                        "recorder: could not write %d attempt batches (%s); retrying in %.1fs", len(msgs), exc, delay
                    )
                    if await _sleep(stop, delay):
                        return False
                    delay = min(delay * 2, _RETRY_MAX)
                    if time.monotonic() - marked >= self._keepalive:
                        marked = time.monotonic()
                        await _in_progress(msgs)
                    continue
                failures += 1
                if failures >= 2:
                    _log.error("recorder: a batch keeps failing (%r); writing its messages one by one", exc)
                    return await self._store_one_by_one(msgs, stop, exc)
                _log.error("recorder: writing %d attempt batches failed (%r); retrying", len(msgs), exc)
            if await _sleep(stop, delay):
                return False
            delay = min(delay * 2, _RETRY_MAX)
            if time.monotonic() - marked >= self._keepalive:
                marked = time.monotonic()
                await _in_progress(msgs)

    async def _store_one_by_one(self, msgs: Sequence[Msg], stop: asyncio.Event, cause: Exception) -> bool:
        for msg in msgs:
            delay = _RETRY_FIRST
            while True:
                try:
                    try:
                        await self._write([msg])
                    except Exception as exc:
                        if _transient(exc):
                            raise
                        await self._park(msg, f"the delivery log refused it: {exc!r}")
                    await _ack(msg)
                    break
                except Exception as exc:  # noqa: BLE001  only the transient ones reach here
                    _log.error("recorder: could not write an attempt batch (%s); retrying in %.1fs", exc, delay)
                    if await _sleep(stop, delay):
                        return False
                    delay = min(delay * 2, _RETRY_MAX)
                    await _in_progress(msgs)
        _log.info("recorder: the failing batch is handled (%r)", cause)
        return True

    async def _write(self, msgs: Sequence[Msg]) -> None:
        attempts: list[AttemptRecord] = []
        skips: list[SkipCount] = []
        for msg in msgs:
            try:
                batch = _decode(msg.data)
                attempts.extend(batch.records)
                skips.extend(batch.skips)
            except _Undecodable as exc:
                await self._park(msg, f"not an attempt batch: {exc}")
        started = time.perf_counter()
        try:
            result = await self.deliveries.record(
                attempts,
                disable_after_failures=self.settings.webhook_disable_after_failures,
                disable_after_period=self.settings.webhook_disable_after_period,
                skips=skips,
            )
        except Exception as exc:
            self.metrics.write_failed("transient" if _transient(exc) else "refused")
            raise
        self.metrics.written(len(attempts), time.perf_counter() - started)
        self.recorded += len(attempts)
        for subscription_id, reason in result.to_disable().items():
            # Stored already: a failed disable is logged, not a reason to write the batch again.
            try:
                disabled = await self.service.disable(subscription_id, reason)
            except Exception as exc:  # noqa: BLE001  logged; the batch is stored
                _log.error(
                    "recorder: could not disable subscription %s (%r): %s",
                    subscription_id,
                    exc,
                    reason,
                    extra={"subscription_id": subscription_id, "error": repr(exc)},
                )
                continue
            if disabled is not None:
                _log.warning(
                    "recorder: disabled subscription %s (%s): %s",
                    disabled.id,
                    disabled.name,
                    reason,
                    extra={"subscription_id": disabled.id, "status": "disabled", "error": reason},
                )

    async def _park(self, msg: Msg, reason: str) -> None:
        """Keep a message the log cannot take on the dead-letter stream, with why (raises what the publish raised)."""
        data = msg.data
        headers = {"Turbohooks-Reason": reason.replace("\r", " ").replace("\n", " ")[:1000], "Turbohooks-Source": ""}
        with contextlib.suppress(Exception):
            headers["Turbohooks-Source"] = f"{ATTEMPTS_STREAM}:{msg.metadata.sequence.stream}"
            headers["Nats-Msg-Id"] = f"parked:{msg.metadata.sequence.stream}"
        limit = self.nc.max_payload - _HEADROOM
        if len(data) > limit:
            headers["Turbohooks-Truncated"] = f"{len(data)} bytes, first {limit} kept"
            data = data[:limit]
        _log.error("recorder: parked an attempts message on %s: %s", PARKED_SUBJECT, reason)
        await self.js.publish(PARKED_SUBJECT, data, headers=headers)
        self.parked += 1
        self.metrics.parked.inc()


def _transient(exc: BaseException) -> bool:
    """An outage (database or NATS) that writing again later gets through; not an error of the batch itself."""
    if isinstance(exc, DATABASE_REFUSALS):
        return False
    return isinstance(exc, (DatabaseUnavailableError, *DATABASE_OUTAGES, *NATS_ERRORS))


def _decode(data: bytes) -> AttemptBatch:
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _Undecodable(str(exc)) from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise _Undecodable(repr(exc)) from exc


async def _ack(msg: Msg) -> None:
    with contextlib.suppress(*NATS_ERRORS):
        # Lost acks only replay stored batches (ignored as duplicates).
        await msg.ack()


async def _in_progress(msgs: Sequence[Msg]) -> None:
    with contextlib.suppress(*NATS_ERRORS):
        for msg in msgs:
            await msg.in_progress()


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
