"""Queueing one more attempt of a stored event, and the one rule that allows it.

The API and the CLI never deliver themselves: they queue a request on the
internal redelivery stream, and a worker of the subscription's integration
makes the attempt and records it like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import NotFoundError as JsNotFoundError

from consumers import RedeliveryRequest, redeliver_subject
from streams import ConflictError, EventValidationError, decode_event

if TYPE_CHECKING:
    from consumers import AttemptTrigger, DeliveryDetail, Engine, Subscription

__all__ = ("event_envelope", "queue_redelivery", "require_active")


def require_active(sub: Subscription, action: str) -> None:
    """Refuse to ``action`` for a paused or disabled subscription (``ConflictError``).

    The one rule of retry, recover and replay: a queued request is delivered by
    the worker at once, which would bypass the pause; resuming delivers the
    backlog anyway.
    """
    if sub.status != "active":
        raise ConflictError(
            f"subscription {sub.id} is {sub.status}; resume it (PATCH active=true, or "
            f"`turbohooks subscriptions resume {sub.id}`) before you {action}: its backlog is delivered on resume"
        )


async def queue_redelivery(
    engine: Engine, sub: Subscription, payload: bytes, *, trigger: AttemptTrigger, stream_seq: int | None
) -> None:
    """Queue ``payload`` (an event envelope) for one attempt to ``sub``; ``ConflictError`` unless it is active."""
    require_active(sub, "queue a delivery")
    request = RedeliveryRequest(
        subscription_id=sub.id, trigger=trigger, event=msgspec.Raw(payload), stream_seq=stream_seq
    )
    await engine.js.publish(redeliver_subject(sub.integration, sub.id), msgspec.json.encode(request))


async def event_envelope(engine: Engine, detail: DeliveryDetail) -> bytes:
    """The event of a logged delivery, as stored in the events stream.

    The log keeps the request body that was sent, which is the envelope only
    for the custom webhook (Slack gets Block Kit, Zapier a flat object), so the
    event is read back from the stream by its sequence.
    """
    if detail.stream_seq is not None:
        try:
            msg = await engine.js.get_msg(engine.settings.stream_name, detail.stream_seq)
        except JsNotFoundError:
            msg = None
        if msg is not None and msg.data and decode_event(msg.data).event_id == detail.event_id:
            return msg.data
    try:
        if decode_event(detail.payload).event_id == detail.event_id:
            return detail.payload
    except EventValidationError:
        pass
    raise ConflictError(
        f"event {detail.event_id} of delivery {detail.id} is no longer in the events stream "
        "(older than TURBOHOOKS_STREAM_MAX_AGE); it cannot be delivered again"
    )
