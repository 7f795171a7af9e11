"""One durable JetStream pull consumer per subscription: its name and configuration."""

from __future__ import annotations

import contextlib
from typing import Final

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError as JsNotFoundError

from streams import Settings, filter_subjects

from .._messages import Subscription

__all__ = (
    "ENTITY_HOLD_FACTOR",
    "MAX_ACK_PENDING",
    "ack_wait",
    "consumer_config",
    "consumer_name",
    "delete_consumer",
    "ensure_consumer",
    "held_limit",
    "in_flight_limit",
    "max_ack_pending",
)

MAX_ACK_PENDING: Final = 10_000
"""Unacknowledged events (in flight or waiting for a retry) per subscription before it stops pulling more."""
ENTITY_HOLD_FACTOR: Final = 4
"""``ordering: entity`` holds this many events per delivery slot: the later events of busy keys wait in
hand while other keys' events are sent, so one hot key does not fill the window."""


def in_flight_limit(subscription: Subscription, settings: Settings) -> int:
    """Requests one worker sends at once for ``subscription``: one with strict order."""
    if subscription.ordering == "strict":
        return 1
    return subscription.max_in_flight or settings.webhook_max_in_flight


def held_limit(subscription: Subscription, settings: Settings) -> int:
    """Events an ``entity``-ordered subscription's holder keeps in hand (sending or waiting for their key)."""
    return min(MAX_ACK_PENDING, ENTITY_HOLD_FACTOR * in_flight_limit(subscription, settings))


def max_ack_pending(subscription: Subscription, settings: Settings) -> int:
    """Unacknowledged events the server lets out, across every worker.

    Strict order is the server's to keep: with one event outstanding (a retry
    stays outstanding while JetStream waits out its delay), nothing later is
    delivered to any worker copy until it is acknowledged. Entity order keeps
    it to what the one holder has in hand, so after a takeover every event the
    previous holder had comes back in the first window.
    """
    match subscription.ordering:
        case "strict":
            return 1
        case "entity":
            return held_limit(subscription, settings)
        case _:
            return MAX_ACK_PENDING


def ack_wait(settings: Settings) -> float:
    """How long an unacknowledged event stays with one worker.

    A crashed worker's in-flight events come back after this, so it is short;
    it must still be longer than one attempt can take (``WEBHOOK_TIMEOUT``).
    """
    return settings.webhook_timeout + max(2.0, settings.webhook_timeout / 2)


def consumer_name(subscription: Subscription) -> str:
    """``<integration>_<id>``: the durable consumer of one subscription."""
    return f"{subscription.integration}_{subscription.id.hex}"


def consumer_config(subscription: Subscription, settings: Settings) -> js_api.ConsumerConfig:
    """The consumer: the subscription's filter subjects, explicit acks, no server-side give-up.

    ``max_deliver`` is unlimited on purpose: the worker counts attempts
    (``num_delivered``) and moves an exhausted event to the dead-letter stream
    itself, so that JetStream never drops one silently.
    """
    subjects = filter_subjects(subscription.event_types)
    return js_api.ConsumerConfig(
        durable_name=consumer_name(subscription),
        description=f"turbohooks subscription {subscription.name}",
        deliver_policy=js_api.DeliverPolicy.NEW,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait(settings),
        max_deliver=-1,
        max_ack_pending=max_ack_pending(subscription, settings),
        filter_subjects=subjects,
        num_replicas=settings.stream_replicas,
    )


async def ensure_consumer(js: JetStreamContext, settings: Settings, subscription: Subscription) -> None:
    """Create the subscription's consumer, or update its filters; the backlog is kept."""
    await js.add_consumer(settings.stream_name, consumer_config(subscription, settings))


async def delete_consumer(js: JetStreamContext, settings: Settings, subscription: Subscription) -> None:
    """Remove the consumer (the subscription was deleted); a missing one is fine."""
    with contextlib.suppress(JsNotFoundError):
        await js.delete_consumer(settings.stream_name, consumer_name(subscription))
