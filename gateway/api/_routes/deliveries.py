"""The delivery log: list, show, retry one, recover every failed one since a time.

Retries are queued for the workers (the API never delivers itself); the
attempt shows up in the log once a worker made it and the recorder wrote it.
Retry and recover are operations (``gateway.operations``) that the CLI runs too.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Router, get, post
from litestar.params import FromPath, QueryParameter

from consumers import DeliveryStatus, DeliverySummary

from ...operations import MAX_RECOVER, RecoverResult, parse_when, recover_failed
from ...operations import retry_delivery as queue_retry
from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, Limit, Offset, When
from .._problems import responses
from .._schemas import DeliveryDetailView, DeliveryPage, RetryQueued

__all__ = ("router",)


@get("/deliveries", summary="The delivery log, newest first", responses=responses(400, 422, 503))
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
    "/deliveries/{delivery_id:uuid}",
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
    "/deliveries/{delivery_id:uuid}/retry",
    status_code=202,
    summary="Deliver once more (queued for a worker)",
    responses=responses(400, 404, 409, 503),
)
async def retry_delivery(engine: EngineDep, delivery_id: FromPath[uuid.UUID]) -> RetryQueued:
    sub = await queue_retry(engine, delivery_id)
    return RetryQueued(delivery_id=delivery_id, subscription_id=sub.id)


@post(
    "/subscriptions/{subscription_id:uuid}/recover",
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
    return await recover_failed(engine, subscription_id, parse_when(since, "since"))


router = Router(
    path="/api",
    tags=["deliveries"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[list_deliveries, get_delivery, retry_delivery, recover_subscription],
)
"""Under ``/api``: recovering a subscription is about its deliveries (and tagged so)."""
