"""Attempt records, batched: one acknowledged JetStream write for many deliveries.

Every delivery waits for its record to be stored before it acknowledges its
event (so the log never misses a delivery that happened). Publishing each
record on its own would cost one fsync each (``sync_interval: always``) and
cap a worker near the disk's fsync rate; batching lets concurrent deliveries
share one write. The common case, a delivery that succeeded, hands its event's
message over too: the batch acknowledges its messages once stored, without a
task or a future per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from streams import ATTEMPTS_SUBJECT_ROOT, NATS_ERRORS

from .._messages import AttemptBatch, AttemptRecord

__all__ = ("AttemptBatcher",)

_log = logging.getLogger("turbohooks.worker")
_encoder: Final = msgspec.json.Encoder()


class AttemptBatcher:
    """Collects attempt records and publishes them in batches of up to ``max_batch`` or every ``linger`` seconds."""

    def __init__(
        self, js: JetStreamContext, *, max_batch: int = 256, max_bytes: int = 256 * 1024, linger: float = 0.02
    ) -> None:
        self.js = js
        self.max_batch = max_batch
        # Well under NATS's default max_payload (1 MiB), whatever server is used.
        self.max_bytes = max_bytes
        # 20 ms: the records wait only to acknowledge events already delivered
        # (ack_wait is seconds), and at a few hundred deliveries/s a 2 ms linger
        # meant an fsync per record competing with the events' own fsyncs.
        self.linger = linger
        self._records: list[AttemptRecord] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._acks: list[Msg] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def record(self, record: AttemptRecord) -> None:
        """Return once ``record`` is stored in the attempts stream; raise what the publish raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._add(record)
        await future

    def record_and_ack(self, record: AttemptRecord, msg: Msg) -> None:
        """Store ``record``, then acknowledge ``msg``; if storing fails ``msg`` stays unacknowledged (redelivered)."""
        self._acks.append(msg)
        self._add(record)

    def _add(self, record: AttemptRecord) -> None:
        self._records.append(record)
        self._bytes += len(record.payload) + len(record.response_body or "") + 1024
        if len(self._records) >= self.max_batch or self._bytes >= self.max_bytes:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._records:
            return
        records, waiters, acks = self._records, self._waiters, self._acks
        self._records, self._waiters, self._acks, self._bytes = [], [], [], 0
        task = asyncio.create_task(self._publish(records, waiters, acks))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _publish(
        self, records: list[AttemptRecord], waiters: list[asyncio.Future[None]], acks: list[Msg]
    ) -> None:
        message = AttemptBatch(batch_id=uuid.uuid4(), records=records)
        # The subject names the first record's subscription: informative only,
        # the recorder reads every subject under the root.
        subject = f"{ATTEMPTS_SUBJECT_ROOT}.{records[0].subscription_id.hex}"
        try:
            await self.js.publish(subject, _encoder.encode(message), headers={"Nats-Msg-Id": str(message.batch_id)})
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
