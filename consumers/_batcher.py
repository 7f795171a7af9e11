"""Attempt records, batched: one acknowledged JetStream write for many deliveries.

Every delivery waits for its record to be stored before it acknowledges its
event (so the log never misses a delivery that happened). Publishing each
record on its own would cost one fsync each (``sync_interval: always``) and
cap a worker near the disk's fsync rate; batching lets concurrent deliveries
share one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Final

import msgspec
from nats.js import JetStreamContext

from streams import ATTEMPTS_SUBJECT_ROOT

from ._messages import AttemptBatch, AttemptRecord

__all__ = ("AttemptBatcher",)

_encoder: Final = msgspec.json.Encoder()


class AttemptBatcher:
    """Collects attempt records and publishes them in batches of up to ``max_batch`` or every ``linger`` seconds."""

    def __init__(
        self, js: JetStreamContext, *, max_batch: int = 256, max_bytes: int = 256 * 1024, linger: float = 0.002
    ) -> None:
        self.js = js
        self.max_batch = max_batch
        # Well under NATS's default max_payload (1 MiB), whatever server is used.
        self.max_bytes = max_bytes
        self.linger = linger
        self._pending: list[tuple[AttemptRecord, asyncio.Future[None]]] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def record(self, record: AttemptRecord) -> None:
        """Return once ``record`` is stored in the attempts stream; raise what the publish raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._bytes += len(record.payload) + len(record.response_body or "") + 1024
        if len(self._pending) >= self.max_batch or self._bytes >= self.max_bytes:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)
        await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._bytes = self._pending, [], 0
        if batch:
            task = asyncio.create_task(self._publish(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _publish(self, batch: list[tuple[AttemptRecord, asyncio.Future[None]]]) -> None:
        message = AttemptBatch(batch_id=uuid.uuid4(), records=[record for record, _ in batch])
        # The subject names the first record's subscription: informative only,
        # the recorder reads every subject under the root.
        subject = f"{ATTEMPTS_SUBJECT_ROOT}.{batch[0][0].subscription_id.hex}"
        try:
            await self.js.publish(subject, _encoder.encode(message), headers={"Nats-Msg-Id": str(message.batch_id)})
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        """Publish what is pending and wait for every batch in flight."""
        self._flush()
        if self._flushing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._flushing, return_exceptions=True)
