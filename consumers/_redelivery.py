"""Queueing one more attempt of a stored event: manual retries, recovery, replays.

The API and the CLI never deliver themselves: they queue a request on the
internal redelivery stream, and a worker of the subscription's integration
makes the attempt and records it like any other.
"""

from __future__ import annotations

import uuid

import msgspec

from streams import ConflictError

from ._messages import AttemptTrigger, Subscription
from ._runtime import Engine
from ._worker import RedeliveryRequest, redeliver_subject

__all__ = ("queue_redelivery", "retry_delivery")


async def queue_redelivery(
    engine: Engine, sub: Subscription, payload: bytes, *, trigger: AttemptTrigger, stream_seq: int | None
) -> None:
    """Queue ``payload`` (an event envelope) for one attempt to ``sub``; ``ConflictError`` unless it is active."""
    if sub.status != "active":
        raise ConflictError(
            f"subscription {sub.id} is {sub.status}: resume it first (its backlog is delivered on resume)"
        )
    request = RedeliveryRequest(
        subscription_id=sub.id, trigger=trigger, event=msgspec.Raw(payload), stream_seq=stream_seq
    )
    await engine.js.publish(redeliver_subject(sub.integration, sub.id), msgspec.json.encode(request))


async def retry_delivery(engine: Engine, delivery_id: uuid.UUID) -> Subscription:
    """Queue one more attempt of a logged delivery; ``NotFoundError`` if it is unknown."""
    detail = await engine.deliveries.get(delivery_id)
    sub = await engine.service.get(detail.subscription_id)
    await queue_redelivery(engine, sub, detail.payload, trigger="manual", stream_seq=detail.stream_seq)
    return sub
