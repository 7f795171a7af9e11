"""Attempts written ahead (``pending``) and completed by their answer, in the SQL delivery log."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import msgspec

from consumers import AttemptRecord, Subscription, delivery_id_for
from consumers.log._database import Database
from consumers.log._store import DeliveryStore, SubscriptionStore

from .test_store import NO_DISABLE, T0, make_attempt, make_subscription


def _ahead(final: AttemptRecord) -> AttemptRecord:
    """The record a worker writes before sending: same attempt id, no answer, no body."""
    return msgspec.structs.replace(
        final,
        outcome="pending",
        payload=b"",
        response_code=None,
        response_headers={},
        response_body=None,
        error="outcome unknown: no answer recorded",
        latency_ms=None,
        finished_at=final.started_at,
        next_attempt_at=None,
    )


async def _setup(db: Database) -> tuple[Subscription, DeliveryStore]:
    return await SubscriptionStore(db).create(make_subscription()), DeliveryStore(db)


async def test_an_attempt_written_ahead_shows_as_pending_then_takes_its_answer(db: Database) -> None:
    sub, deliveries = await _setup(db)
    event_id = uuid.uuid4()
    final = make_attempt(sub, event_id, 1, "failed", T0)
    await deliveries.record([_ahead(final)], **NO_DISABLE)
    delivery = await deliveries.get(delivery_id_for(sub.id, event_id))
    assert delivery.status == "pending" and delivery.attempts == 1
    assert [(a.attempt_id, a.outcome) for a in delivery.attempt_log] == [(final.attempt_id, "pending")]

    result = await deliveries.record([final], **NO_DISABLE)
    assert result.recorded == 1
    delivery = await deliveries.get(delivery_id_for(sub.id, event_id))
    assert delivery.status == "failed" and delivery.attempts == 1 and delivery.response_code == 500
    assert [(a.attempt_id, a.outcome) for a in delivery.attempt_log] == [(final.attempt_id, "failed")]
    assert delivery.attempt_log[0].finished_at == T0 and delivery.attempt_log[0].error == "HTTP failed"
    subscription = await SubscriptionStore(db).get(sub.id)
    assert subscription.consecutive_failures == 1  # counted once, not for the pending step too

    # Replays of either record change nothing.
    again = await deliveries.record([_ahead(final), final], **NO_DISABLE)
    assert again.recorded == 0
    assert (await deliveries.get(delivery_id_for(sub.id, event_id))).attempts == 1


async def test_pending_and_answer_in_one_batch_or_out_of_order(db: Database) -> None:
    sub, deliveries = await _setup(db)
    first, second = uuid.uuid4(), uuid.uuid4()
    a = make_attempt(sub, first, 1, "success", T0)
    b = make_attempt(sub, second, 1, "success", T0)
    await deliveries.record([_ahead(a), a], **NO_DISABLE)
    await deliveries.record([b], **NO_DISABLE)
    await deliveries.record([_ahead(b)], **NO_DISABLE)  # arriving late: the answer stays
    for event_id in (first, second):
        delivery = await deliveries.get(delivery_id_for(sub.id, event_id))
        assert delivery.status == "success" and delivery.attempts == 1
        assert [x.outcome for x in delivery.attempt_log] == ["success"]


async def test_a_request_whose_worker_died_stays_pending_beside_its_redelivery(db: Database) -> None:
    sub, deliveries = await _setup(db)
    event_id = uuid.uuid4()
    lost = make_attempt(sub, event_id, 1, "success", T0)
    redelivered = make_attempt(sub, event_id, 2, "success", T0 + timedelta(seconds=45))
    await deliveries.record([_ahead(lost)], **NO_DISABLE)
    await deliveries.record([_ahead(redelivered)], **NO_DISABLE)
    await deliveries.record([redelivered], **NO_DISABLE)
    delivery = await deliveries.get(delivery_id_for(sub.id, event_id))
    assert delivery.status == "success" and delivery.attempts == 2
    outcomes: list[Any] = [(x.attempt, x.outcome) for x in delivery.attempt_log]
    assert outcomes == [(1, "pending"), (2, "success")]
