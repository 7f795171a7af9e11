"""Recover a subscription: queue one more attempt of every delivery that failed since a time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec

from ._audit import record_audit
from ._queue import event_envelope, queue_redelivery, require_active

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("MAX_RECOVER", "RecoverResult", "recover_failed")

MAX_RECOVER: Final = 10_000
"""Failed deliveries one recover call queues at most."""
_QUEUE_CONCURRENCY: Final = 32


class RecoverResult(msgspec.Struct, kw_only=True):
    """Failed deliveries queued for one more attempt each."""

    subscription_id: uuid.UUID
    since: datetime
    queued: int
    max_deliveries: int
    truncated: bool
    """True when more than ``max_deliveries`` failed: call again to queue the rest."""


async def recover_failed(
    engine: Engine, subscription_id: uuid.UUID, since: datetime, *, max_deliveries: int = MAX_RECOVER
) -> RecoverResult:
    """Queue every failed delivery of the subscription created since ``since`` (at most ``max_deliveries``).

    ``NotFoundError`` for an unknown subscription, ``ConflictError`` unless it is active.
    """
    sub = await engine.service.get(subscription_id)
    require_active(sub, "recover")
    failed = await engine.deliveries.failed_since(sub.id, since)
    chosen = failed[:max_deliveries]
    limit = asyncio.Semaphore(_QUEUE_CONCURRENCY)

    async def queue(delivery_id: uuid.UUID) -> None:
        async with limit:
            detail = await engine.deliveries.get(delivery_id)
            envelope = await event_envelope(engine, detail)
            await queue_redelivery(engine, sub, envelope, trigger="manual", stream_seq=detail.stream_seq)

    await asyncio.gather(*(queue(d.id) for d in chosen))
    await record_audit(
        engine, None, "recover", f"subscription:{sub.id}", {"since": since.isoformat(), "queued": len(chosen)}
    )
    return RecoverResult(
        subscription_id=sub.id,
        since=since,
        queued=len(chosen),
        max_deliveries=max_deliveries,
        truncated=len(failed) > len(chosen),
    )
