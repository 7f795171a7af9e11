"""The delivery log: list, show, retry one, recover every failed one since a time.

Retries are queued for the workers (the API never delivers itself); the
attempt shows up in the log once a worker made it and the recorder wrote it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Final

from litestar import get, post
from litestar.params import FromPath, QueryParameter

from consumers import DeliveryStatus, DeliverySummary, Subscription, event_envelope, queue_redelivery
from consumers import retry_delivery as queue_retry
from streams import ConflictError

from .._problems import responses
from .._schemas import DeliveryDetailView, DeliveryPage, RecoverResult, RetryQueued
from ._params import EngineDep, Limit, Offset, When, parse_when

__all__ = ("MAX_RECOVER", "get_delivery", "list_deliveries", "recover_subscription", "retry_delivery")

MAX_RECOVER: Final = 10_000
"""Failed deliveries one recover call queues at most."""
_QUEUE_CONCURRENCY: Final = 32
_TAGS: Final = ["deliveries"]


def require_active(sub: Subscription, action: str) -> None:
    """Refuse to queue deliveries for a subscription that is paused or disabled: it would deliver anyway."""
    if sub.status != "active":
        raise ConflictError(f"subscription {sub.id} is {sub.status}; resume it (PATCH active=true) before you {action}")


@get("/api/deliveries", tags=_TAGS, summary="The delivery log, newest first", responses=responses(400, 422, 503))
async def list_deliveries(
    engine: EngineDep,
    subscription_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this subscription's.")] = None,
    status: Annotated[DeliveryStatus | None, QueryParameter(description="Only deliveries in this status.")] = None,
    event_type: Annotated[str | None, QueryParameter(max_length=200, description="Only this event type.")] = None,
    since: When = None,
    until: When = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryPage:
    start = parse_when(since, "since") if since is not None else None
    end = parse_when(until, "until") if until is not None else None
    store = engine.deliveries
    items = await store.list(
        subscription_id=subscription_id,
        status=status,
        event_type=event_type,
        since=start,
        until=end,
        limit=limit,
        offset=offset,
    )
    total = await store.count(
        subscription_id=subscription_id, status=status, event_type=event_type, since=start, until=end
    )
    return DeliveryPage(items=items, total=total, limit=limit, offset=offset)


@get(
    "/api/deliveries/{delivery_id:uuid}",
    tags=_TAGS,
    summary="One delivery: request, latest answer, every attempt",
    responses=responses(400, 404, 503),
)
async def get_delivery(engine: EngineDep, delivery_id: FromPath[uuid.UUID]) -> DeliveryDetailView:
    detail = await engine.deliveries.get(delivery_id)
    latest = detail.attempt_log[-1] if detail.attempt_log else None
    return DeliveryDetailView(
        **{field: getattr(detail, field) for field in DeliverySummary.__struct_fields__},
        request_url=latest.request_url if latest else None,
        request_headers=latest.request_headers if latest else {},
        request_body=detail.payload.decode("utf-8", "replace"),
        response_body=detail.response_body,
        attempt_log=detail.attempt_log,
    )


@post(
    "/api/deliveries/{delivery_id:uuid}/retry",
    tags=_TAGS,
    status_code=202,
    summary="Deliver once more (queued for a worker)",
    responses=responses(400, 404, 409, 503),
)
async def retry_delivery(engine: EngineDep, delivery_id: FromPath[uuid.UUID]) -> RetryQueued:
    # The engine's own retry (shared with the CLI): 404 unknown, 409 not active.
    sub = await queue_retry(engine, delivery_id)
    return RetryQueued(delivery_id=delivery_id, subscription_id=sub.id)


@post(
    "/api/subscriptions/{subscription_id:uuid}/recover",
    tags=_TAGS,
    status_code=202,
    summary="Retry every failed delivery since a time",
    description=f"Queues one more attempt of each failed delivery created since `since` (at most {MAX_RECOVER}).",
    responses=responses(400, 404, 409, 422, 503),
)
async def recover_subscription(
    engine: EngineDep,
    subscription_id: FromPath[uuid.UUID],
    since: Annotated[
        str, QueryParameter(max_length=64, description="An RFC 3339 time or a duration before now (`2h`).")
    ],
) -> RecoverResult:
    start = parse_when(since, "since")
    sub = await engine.service.get(subscription_id)
    require_active(sub, "recover")
    failed = await engine.deliveries.failed_since(sub.id, start)
    chosen = failed[:MAX_RECOVER]
    limit = asyncio.Semaphore(_QUEUE_CONCURRENCY)

    async def queue(delivery_id: uuid.UUID) -> None:
        async with limit:
            detail = await engine.deliveries.get(delivery_id)
            envelope = await event_envelope(engine, detail)
            await queue_redelivery(engine, sub, envelope, trigger="manual", stream_seq=detail.stream_seq)

    await asyncio.gather(*(queue(d.id) for d in chosen))
    return RecoverResult(
        subscription_id=sub.id,
        since=start,
        queued=len(chosen),
        max_deliveries=MAX_RECOVER,
        truncated=len(failed) > len(chosen),
    )
