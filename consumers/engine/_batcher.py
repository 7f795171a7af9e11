"""Attempt records, batched: one acknowledged JetStream write for many deliveries.

Every delivery waits for its record to be stored before it acknowledges its
event (so the log never misses a delivery that happened). Publishing each
record on its own would cost one fsync each (``sync_interval: always``) and
cap a worker near the disk's fsync rate; batching lets concurrent deliveries
share one write. The common case, a delivery that succeeded, hands its event's
message over too: the batch acknowledges its messages once stored, without a
task or a future per delivery.

Events acknowledged without a request (a filter excluded them; later: a rate
limit or loop prevention) are counted the same way: :meth:`AttemptBatcher.count`
adds one to the batch's per-subscription counts and hands the event's message
over, acknowledged once the batch holding the count is stored. So a count is
never lost while its event is acknowledged, and costs no write of its own.

Neither a record nor a batch exceeds the server's ``max_payload`` (see
:mod:`~consumers.engine._sizing`): batches are cut by encoded size, and a
record too large alone keeps its request body by reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from streams import ATTEMPTS_SUBJECT_ROOT, NATS_ERRORS

from .._messages import AttemptRecord, CountedSkip, SkipCount
from ._sizing import HEADROOM, fit_record

__all__ = ("AttemptBatcher",)

_log = logging.getLogger("turbohooks.worker")
_DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024
_ENVELOPE: Final = 96
"""Bytes of a batch besides its records: ``{"batch_id":"<uuid>","records":[...]}``."""


class AttemptBatcher:
    """Collects attempt records and publishes them in batches of up to ``max_batch`` or every ``linger`` seconds."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        max_batch: int = 256,
        max_bytes: int = 256 * 1024,
        linger: float = 0.02,
        max_payload: Callable[[], int] | None = None,
    ) -> None:
        self.js = js
        self.max_batch = max_batch
        # The batch's target size; never above the server's max_payload (less headroom).
        self.max_bytes = max_bytes
        # The server's max_payload, read when a record is added (the connection's
        # server info: it may change on reconnect); nats-py's default without one.
        self._max_payload = max_payload or (lambda: _DEFAULT_MAX_PAYLOAD)
        # 20 ms: the records wait only to acknowledge events already delivered
        # (ack_wait is seconds), and at a few hundred deliveries/s a 2 ms linger
        # meant an fsync per record competing with the events' own fsyncs.
        self.linger = linger
        self._records: list[bytes] = []
        """Encoded records of the next batch."""
        self._subject = ""
        self._waiters: list[asyncio.Future[None]] = []
        self._acks: list[Msg] = []
        self._skips: dict[tuple[uuid.UUID, CountedSkip, int], int] = {}
        """Counts of events not sent, by (subscription, reason, minute since the epoch), for the next batch."""
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self._flushing: set[asyncio.Task[None]] = set()

    async def record(self, record: AttemptRecord, *, now: bool = False) -> None:
        """Return once ``record`` is stored in the attempts stream; raise what the publish raised.

        ``now``: without the linger (an ordered subscription's next event waits for it).
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add(record, waiter=future)
        if now:
            self._flush_soon()
        await future

    async def write_ahead(self, record: AttemptRecord) -> None:
        """Like :meth:`record`, without the linger: the batch goes out now (a request waits for it).

        Records written ahead in one turn of the event loop share one batch,
        and the records already waiting for their linger go with them.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add(record, waiter=future)
        self._flush_soon()
        await future

    def record_and_ack(self, record: AttemptRecord, msg: Msg, *, now: bool = False) -> None:
        """Store ``record``, then acknowledge ``msg``; if storing fails ``msg`` stays unacknowledged (redelivered).

        ``now``: without the linger (with strict order nothing else is delivered until the ack).
        """
        self._add(record, ack=msg)
        if now:
            self._flush_soon()

    def _flush_soon(self) -> None:
        """Publish the batch in hand at the next turn of the event loop (records of this turn go with it)."""
        if self._records and not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def count(self, subscription_id: uuid.UUID, reason: CountedSkip, msg: Msg | None = None) -> None:
        """Count one event of ``subscription_id`` not sent for ``reason``; then acknowledge ``msg``, if given.

        The count travels in the next batch (started if none is in hand, within
        the linger); ``msg`` is acknowledged once that batch is stored, and stays
        unacknowledged (redelivered, counted again) if storing fails.
        """
        if not self._records and not self._skips:
            self._subject = f"{ATTEMPTS_SUBJECT_ROOT}.{subscription_id.hex}"
        key = (subscription_id, reason, int(time.time() // 60))
        self._skips[key] = self._skips.get(key, 0) + 1
        if msg is not None:
            self._acks.append(msg)
        if len(self._acks) >= self.max_batch or len(self._skips) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)

    @property
    def limit(self) -> int:
        """The largest record or batch published: the server's max_payload less headroom."""
        return max(self._max_payload() - HEADROOM, 4096)

    def _add(
        self, record: AttemptRecord, *, waiter: asyncio.Future[None] | None = None, ack: Msg | None = None
    ) -> None:
        limit = self.limit
        _, encoded = fit_record(record, limit - _ENVELOPE)
        if self._records and self._bytes + len(encoded) + 1 > min(self.max_bytes, limit - _ENVELOPE):
            self._flush()  # the record does not fit the batch in hand: it starts the next one
        if not self._records and not self._skips:
            self._subject = f"{ATTEMPTS_SUBJECT_ROOT}.{record.subscription_id.hex}"
        self._records.append(encoded)
        if waiter is not None:
            self._waiters.append(waiter)
        if ack is not None:
            self._acks.append(ack)
        self._bytes += len(encoded) + 1
        if len(self._records) >= self.max_batch or self._bytes >= self.max_bytes:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)

    def _flush(self) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._records and not self._skips:
            return
        records, waiters, acks = self._records, self._waiters, self._acks
        skips = _encode_skips(self._skips) if self._skips else b""
        self._records, self._waiters, self._acks, self._bytes, self._skips = [], [], [], 0, {}
        task = asyncio.create_task(self._publish(self._subject, records, waiters, acks, skips))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _publish(
        self,
        subject: str,
        records: list[bytes],
        waiters: list[asyncio.Future[None]],
        acks: list[Msg],
        skips: bytes = b"",
    ) -> None:
        batch_id = uuid.uuid4()
        # An AttemptBatch, assembled from records encoded once, as they came.
        # The subject names the first record's subscription: informative only,
        # the recorder reads every subject under the root.
        message = b'{"batch_id":"%s","records":[%s]%s}' % (
            str(batch_id).encode(),
            b",".join(records),
            b',"skips":' + skips if skips else b"",
        )
        try:
            await self.js.publish(subject, message, headers={"Nats-Msg-Id": str(batch_id)})
        except BaseException as exc:
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
            if acks:
                # Unacknowledged: JetStream redelivers them after ack_wait, so nothing is lost.
                _log.warning("%d attempt records not stored (%r); their events will be redelivered", len(acks), exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for future in waiters:
            if not future.done():
                future.set_result(None)
        try:
            for msg in acks:
                await msg.ack()
        except NATS_ERRORS as exc:
            _log.warning("could not acknowledge delivered events (%s); they will be redelivered", exc)

    async def close(self) -> None:
        """Publish what is pending and wait for every batch in flight."""
        self._flush()
        if self._flushing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._flushing, return_exceptions=True)


def _encode_skips(counts: dict[tuple[uuid.UUID, CountedSkip, int], int]) -> bytes:
    """The batch's ``skips``: a :class:`~consumers.SkipCount` per (subscription, reason, minute)."""
    return msgspec.json.encode(
        [
            SkipCount(
                subscription_id=sub_id,
                reason=reason,
                minute=datetime.fromtimestamp(minute * 60, UTC),
                count=count,
            )
            for (sub_id, reason, minute), count in counts.items()
        ]
    )
