"""Each subscription's health, read from JetStream and the delivery log (never estimated).

* waiting (``pending``): the consumer's ``num_pending``, events not yet handed to a worker;
* ``in_flight``: its ``num_ack_pending``, events with a worker or waiting for a retry;
* ``oldest_pending_seconds``: the age of the oldest event not yet acknowledged: the first
  message of the events stream past the consumer's ack floor that its filter subjects
  match (its stored timestamp), 0 when nothing waits;
* ``last_5m`` / ``last_1h``: attempts, success rate, p50/p95/p99 latency, timeouts,
  401/403 answers and deliveries gone dead, from the delivery log; events not sent
  (``filtered``, ``throttled``, ``loop_stopped``) from the skip counts, by whole minutes;
* ``retries_scheduled``: deliveries of the log waiting for their next attempt;
* ``dead_letters``: the messages of the dead-letter stream under the subscription's subject.

Read by ``GET /api/stats``, ``GET /api/subscriptions/{id}/health``, the UI,
``turbohooks top``, the gateway's ``/metrics`` and the alert evaluator (:mod:`._alerts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from nats.js.errors import NotFoundError as JsNotFoundError

from consumers import Engine, Subscription, consumer_name
from consumers.log import SubscriptionWindow
from streams import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT_ROOT

__all__ = ("HEALTH_WINDOWS", "SubscriptionHealth", "read_health", "subscription_health", "trouble")

HEALTH_WINDOWS: Final = {"5m": 300.0, "1h": 3600.0}
"""The windows of the log's figures, by the name they are shown with."""
_CONCURRENCY: Final = 16
_PAGE: Final = 500


class SubscriptionHealth(msgspec.Struct, kw_only=True):
    """One subscription's figures now."""

    subscription_id: uuid.UUID
    name: str
    integration: str
    status: str
    consumer: bool
    """False when its JetStream consumer is missing (``pending``, ``in_flight`` and the age are then ``null``)."""
    pending: int | None
    """Events waiting for a worker (the consumer's ``num_pending``)."""
    in_flight: int | None
    """Events with a worker or waiting for a retry (the consumer's ``num_ack_pending``)."""
    oldest_pending_seconds: float | None
    """Age of the oldest event not yet acknowledged (waiting or in flight); 0 when none."""
    retries_scheduled: int
    """Deliveries waiting for their next attempt (delivery log)."""
    dead_letters: int
    """Messages of the dead-letter stream for this subscription."""
    last_5m: SubscriptionWindow
    last_1h: SubscriptionWindow


def trouble(health: SubscriptionHealth) -> tuple[float, ...]:
    """Sort key, worst first: failing now, then dead letters, then lag, then the backlog."""
    rate = health.last_5m.success_rate
    return (
        -(1.0 - rate if rate is not None else 0.0),
        -health.last_5m.dead,
        -(health.oldest_pending_seconds or 0.0),
        -float(health.dead_letters),
        -float((health.pending or 0) + (health.in_flight or 0)),
    )


async def _subscriptions(engine: Engine, limit: int) -> list[Subscription]:
    subs: list[Subscription] = []
    while len(subs) < limit:
        page = await engine.subscriptions.list(limit=min(_PAGE, limit - len(subs)), offset=len(subs))
        subs.extend(page)
        if len(page) < _PAGE:
            break
    return subs


async def _oldest(engine: Engine, subjects: list[str], floor: int, now: datetime) -> float | None:
    """Seconds since the first message past ``floor`` on any of ``subjects``; None when there is none."""
    stream = engine.settings.stream_name

    async def first(subject: str) -> datetime | None:
        with contextlib.suppress(JsNotFoundError):
            msg = await engine.js.get_msg(stream, seq=floor + 1, subject=subject, next=True)
            return msg.time
        return None

    found = [t for t in await asyncio.gather(*(first(s) for s in subjects)) if t is not None]
    return max(0.0, (now - min(found)).total_seconds()) if found else None


async def _dead_letter_counts(engine: Engine) -> dict[str, int]:
    """Messages of the dead-letter stream per subject (one request: the server counts them)."""
    try:
        info = await engine.js.stream_info(DEAD_LETTER_STREAM, subjects_filter=f"{DEAD_LETTER_SUBJECT_ROOT}.>")
    except JsNotFoundError:
        return {}
    return dict(info.state.subjects or {})


async def read_health(engine: Engine, *, limit: int = 10_000, log: bool = True) -> list[SubscriptionHealth]:
    """Every subscription's health (at most ``limit`` of them, oldest first), in one pass over the sources.

    ``log=False`` reads JetStream only (the windows and retries stay at their empty defaults): what the
    scrape-time gauges and the lag alert need, without reading an hour of attempts each time.
    """
    return await _health(engine, await _subscriptions(engine, limit), log=log)


async def subscription_health(engine: Engine, subscription: Subscription) -> SubscriptionHealth:
    """One subscription's health."""
    return (await _health(engine, [subscription]))[0]


async def _health(engine: Engine, subs: list[Subscription], *, log: bool = True) -> list[SubscriptionHealth]:
    now = datetime.now(UTC)
    windows: dict[str, dict[uuid.UUID, SubscriptionWindow]] = {name: {} for name in HEALTH_WINDOWS}
    retries: dict[uuid.UUID, int] = {}
    if log:
        for name, seconds in HEALTH_WINDOWS.items():
            windows[name] = await engine.deliveries.subscription_windows(now - timedelta(seconds=seconds))
        retries = await engine.deliveries.retries_scheduled()
    dead = await _dead_letter_counts(engine)
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(sub: Subscription) -> SubscriptionHealth:
        pending: int | None = None
        in_flight: int | None = None
        oldest: float | None = None
        async with limit:
            try:
                info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
            except JsNotFoundError:
                info = None
            if info is not None:
                pending, in_flight = info.num_pending or 0, info.num_ack_pending or 0
                oldest = 0.0
                if pending or in_flight:
                    config = info.config
                    subjects = list(
                        config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
                    )
                    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
                    oldest = await _oldest(engine, subjects or ["turbo.>"], floor or 0, now) or 0.0
        return SubscriptionHealth(
            subscription_id=sub.id,
            name=sub.name,
            integration=sub.integration,
            status=sub.status,
            consumer=info is not None,
            pending=pending,
            in_flight=in_flight,
            oldest_pending_seconds=oldest,
            retries_scheduled=retries.get(sub.id, 0),
            dead_letters=dead.get(f"{DEAD_LETTER_SUBJECT_ROOT}.{sub.id.hex}", 0),
            last_5m=windows["5m"].get(sub.id) or SubscriptionWindow(),
            last_1h=windows["1h"].get(sub.id) or SubscriptionWindow(),
        )

    return list(await asyncio.gather(*(one(sub) for sub in subs)))
