"""One durable JetStream pull consumer per subscription: its name and configuration."""

from __future__ import annotations

import contextlib
from typing import Final

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError as JsNotFoundError

from streams import Settings, filter_subjects

from .._messages import Subscription

__all__ = ("MAX_ACK_PENDING", "ack_wait", "consumer_config", "consumer_name", "delete_consumer", "ensure_consumer")

MAX_ACK_PENDING: Final = 10_000
"""Unacknowledged events (in flight or waiting for a retry) per subscription before it stops pulling more."""


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
        max_ack_pending=MAX_ACK_PENDING,
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
