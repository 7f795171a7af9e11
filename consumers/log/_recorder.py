"""The recorder: the single writer of the delivery log.

Workers never write SQL (several processes writing one SQLite file fail under
load); they publish each attempt to the internal attempts stream. The recorder
drains it in batches, writes each batch in one transaction, then acknowledges
it; a crash in between replays the batch, which the store ignores (attempt ids
are unique). It also acts on what the log shows: a subscription failing for
too long, or answered 410 Gone, is disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from sqlalchemy.exc import SQLAlchemyError

from streams import (
    ATTEMPTS_STREAM,
    NATS_ERRORS,
    RECORDER_CONSUMER,
    RECORDER_FETCH,
    DatabaseUnavailableError,
    Settings,
    recorder_consumer_config,
)

from .._messages import AttemptBatch, AttemptRecord
from ._store import DeliveryStore

if TYPE_CHECKING:
    from ..subscriptions import SubscriptionService  # the service writes through this package's store

__all__ = ("RECORDER_CONSUMER", "Recorder")

_log = logging.getLogger("turbohooks.recorder")

_decoder: Final = msgspec.json.Decoder(AttemptBatch)


class Recorder:
    """Writes attempt outcomes to ``webhook_deliveries`` and disables failing subscriptions."""

    def __init__(self, settings: Settings, nc: NATS, deliveries: DeliveryStore, service: SubscriptionService) -> None:
        self.settings = settings
        self.js = nc.jetstream(timeout=settings.publish_timeout)
        self.deliveries = deliveries
        self.service = service
        self.recorded = 0
        self.idle = asyncio.Event()
        """Set whenever the recorder has caught up with the attempts stream."""

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set; the batch in hand is finished first."""
        await self.js.add_consumer(ATTEMPTS_STREAM, recorder_consumer_config())
        psub = await self.js.pull_subscribe_bind(durable=RECORDER_CONSUMER, stream=ATTEMPTS_STREAM)
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.create_task(psub.fetch(RECORDER_FETCH, timeout=0.25))
                done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if fetch not in done:
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *NATS_ERRORS):
                        await fetch
                    break
                try:
                    msgs = fetch.result()
                except NATS_ERRORS:
                    msgs = []
                if not msgs:
                    self.idle.set()
                    continue
                try:
                    await self._record(msgs)
                except (DatabaseUnavailableError, SQLAlchemyError) as exc:
                    # Not acknowledged: the batch comes back after ack_wait, and
                    # writing it twice is harmless (attempt ids are unique).
                    _log.error("recorder: could not write %d attempts (%s); retrying", len(msgs), exc)
                    await asyncio.sleep(1.0)
        finally:
            stopper.cancel()
            with contextlib.suppress(*NATS_ERRORS):
                await psub.unsubscribe()

    async def _record(self, msgs: list[Msg]) -> None:
        self.idle.clear()
        attempts: list[AttemptRecord] = []
        for msg in msgs:
            try:
                attempts.extend(_decoder.decode(msg.data).records)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                _log.error("recorder: skipping an undecodable attempt batch: %s", exc)
        result = await self.deliveries.record(
            attempts,
            disable_after_failures=self.settings.webhook_disable_after_failures,
            disable_after_period=self.settings.webhook_disable_after_period,
        )
        for subscription_id, reason in result.to_disable().items():
            disabled = await self.service.disable(subscription_id, reason)
            if disabled is not None:
                _log.warning("recorder: disabled subscription %s (%s): %s", disabled.id, disabled.name, reason)
        # AckPolicy.ALL: acknowledging the last message settles the whole batch.
        await msgs[-1].ack()
        self.recorded += len(attempts)
