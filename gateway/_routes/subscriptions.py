"""Subscriptions: create, list, show, change (pause and resume), delete, rotate the secret, test.

Every change goes through ``SubscriptionService``, which mirrors it to the
workers through the KV registry: running workers see it within about a second.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import msgspec
from litestar import delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from consumers import (
    USER_AGENT,
    DeliveryClient,
    SubscriptionCreate,
    SubscriptionPatch,
    SubscriptionStatus,
    SubscriptionView,
    delivery_headers,
    subscription_view,
)
from integrations import get_integration
from streams import EventValidationError, build_event, encode_event, match_event_types

from .._problems import responses
from .._schemas import DeliveryTestResult, SubscriptionCreateBody, SubscriptionPage, SubscriptionUpdateBody
from ._params import EngineDep, Limit, Offset, refuse_nul

__all__ = (
    "create_subscription",
    "delete_subscription",
    "get_subscription",
    "list_subscriptions",
    "rotate_secret",
    "send_test_event",
    "update_subscription",
)

_TAGS: Final = ["subscriptions"]
_ID: Final = "/api/subscriptions/{subscription_id:uuid}"
_TEST_SOURCE: Final = "/turbo/test"
_TEST_TIMEOUT: Final = 10.0
"""A test send waits at most this long (less than WEBHOOK_TIMEOUT may allow): a person is waiting."""


@post(
    "/api/subscriptions",
    tags=_TAGS,
    summary="Create a subscription",
    description="The answer carries `secret`, the signing secret, shown this once.",
    responses=responses(400, 409, 413, 422, 503),
)
async def create_subscription(engine: EngineDep, data: JSONBody[SubscriptionCreateBody]) -> SubscriptionView:
    refuse_nul(msgspec.to_builtins(data))
    created = await engine.service.create(SubscriptionCreate(**msgspec.structs.asdict(data)))
    return subscription_view(created, with_secret=True)


@get("/api/subscriptions", tags=_TAGS, summary="List subscriptions, oldest first", responses=responses(400, 503))
async def list_subscriptions(
    engine: EngineDep,
    status: Annotated[SubscriptionStatus | None, QueryParameter(description="Only those with this status.")] = None,
    integration: Annotated[
        str | None, QueryParameter(max_length=100, description="Only this integration kind.")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SubscriptionPage:
    subs = await engine.subscriptions.list(status=status, integration=integration, limit=limit, offset=offset)
    total = await engine.subscriptions.count(status=status, integration=integration)
    return SubscriptionPage(items=[subscription_view(s) for s in subs], total=total, limit=limit, offset=offset)


@get(_ID, tags=_TAGS, summary="One subscription (without its secret)", responses=responses(400, 404, 503))
async def get_subscription(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionView:
    return subscription_view(await engine.service.get(subscription_id))


@patch(
    _ID,
    tags=_TAGS,
    summary="Change a subscription; `active` pauses and resumes it",
    responses=responses(400, 404, 409, 413, 422, 503),
)
async def update_subscription(
    engine: EngineDep, subscription_id: FromPath[uuid.UUID], data: JSONBody[SubscriptionUpdateBody]
) -> SubscriptionView:
    refuse_nul(msgspec.to_builtins(data))
    changes = SubscriptionPatch(**msgspec.structs.asdict(data))
    return subscription_view(await engine.service.update(subscription_id, changes))


@delete(
    _ID,
    tags=_TAGS,
    summary="Delete a subscription, its backlog and its delivery log",
    responses=responses(400, 404, 503),
)
async def delete_subscription(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> None:
    await engine.service.delete(subscription_id)


@post(
    _ID + "/rotate-secret",
    tags=_TAGS,
    status_code=200,
    summary="A new signing secret (in the answer, this once)",
    description="The previous secret keeps signing beside the new one for WEBHOOK_SECRET_GRACE.",
    responses=responses(400, 404, 503),
)
async def rotate_secret(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionView:
    return subscription_view(await engine.service.rotate_secret(subscription_id), with_secret=True)


@post(
    _ID + "/test",
    tags=_TAGS,
    status_code=200,
    summary="Send a signed test event now",
    description="A synthetic event of the first catalog type the subscription matches, signed like a real "
    "delivery, sent at once (not queued) and not recorded in the delivery log. The answer has the "
    "receiver's status, latency and the start of its body.",
    responses=responses(400, 404, 422, 503),
)
async def send_test_event(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> DeliveryTestResult:
    sub = await engine.service.get(subscription_id)
    settings = engine.settings
    types = match_event_types(sub.event_types)
    event = build_event(
        event_type=types[0],
        entity_id="turbohooks-test",
        data={"current": {"test": True, "message": "A test event from turbohooks; it changes nothing."}},
        actor={"type": "system", "name": "turbohooks-test"},
    )
    raw = encode_event(event)
    integration = get_integration(sub.integration)
    request = integration.render(event, raw, sub.url, sub.integration_config)
    if request is None:
        raise EventValidationError("integration", f"the {sub.integration} integration sends no {event.event_type}")
    headers = delivery_headers(sub, integration, event, request, source=_TEST_SOURCE)
    # Its own short-lived client: tests are rare, and the delivery rules (address
    # guard, no redirects, capped body) are the workers' exactly.
    async with DeliveryClient(
        timeout=min(settings.webhook_timeout, _TEST_TIMEOUT),
        response_body_cap=settings.response_body_cap,
        user_agent=USER_AGENT,
        max_connections=4,
        guard_addresses=True,
        allowed_hosts=settings.webhook_allowed_hosts,
    ) as client:
        result = await client.post(request.url, request.body, headers)
    return DeliveryTestResult(
        subscription_id=sub.id,
        event_id=event.event_id,
        event_type=event.event_type,
        url=request.url,
        success=result.status is not None and 200 <= result.status < 300 and result.error is None,
        status=result.status,
        latency_ms=round(result.latency_ms, 3),
        body=result.body,
        truncated=result.truncated,
        error=result.error,
    )
