"""Retry one logged delivery: queue one more attempt of its event to its subscription."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ._audit import record_audit
from ._queue import event_envelope, queue_redelivery, require_active

if TYPE_CHECKING:
    from consumers import Engine, Subscription

__all__ = ("retry_delivery",)


async def retry_delivery(engine: Engine, delivery_id: uuid.UUID) -> Subscription:
    """Queue one more attempt of a logged delivery; ``NotFoundError`` if unknown, ``ConflictError`` if not active."""
    detail = await engine.deliveries.get(delivery_id)
    sub = await engine.service.get(detail.subscription_id)
    require_active(sub, "retry a delivery")
    envelope = await event_envelope(engine, detail)
    await queue_redelivery(engine, sub, envelope, trigger="manual", stream_seq=detail.stream_seq)
    await record_audit(engine, None, "retry", f"delivery:{delivery_id}", {"subscription_id": str(sub.id)})
    return sub
