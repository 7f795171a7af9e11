"""Subscriptions: create, list, show, change (pause and resume), delete, rotate the secret, test, replay, preview.

Every change goes through ``SubscriptionService``, which mirrors it to the
workers through the KV registry: running workers see it within about a second.
Test-send and replay are operations (``gateway.operations``) that the CLI runs too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import msgspec
from litestar import Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from consumers import SubscriptionStatus, SubscriptionView, subscription_view

from ...operations import (
    DEFAULT_PREVIEW_EVENTS,
    MAX_PREVIEW_EVENTS,
    MAX_REPLAY_EVENTS,
    ReplayRange,
    SubscriptionHealth,
    parse_when,
    preview,
    replay_subscription,
)
from ...operations import send_test_event as send_now
from ...operations import subscription_health as read_subscription_health
from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, Limit, Offset, refuse_nul
from .._problems import responses
from .._schemas import (
    DeliveryTestResult,
    PreviewBody,
    PreviewResult,
    ReplayBody,
    ReplayResult,
    SubscriptionCreateBody,
    SubscriptionPage,
    SubscriptionUpdateBody,
)

__all__ = ("router",)

_ID: Final = "/{subscription_id:uuid}"


@post(
    "/",
    summary="Create a subscription",
    description="The answer carries `secret`, the signing secret, shown this once.",
    responses=responses(400, 409, 413, 422, 503),
)
async def create_subscription(engine: EngineDep, data: JSONBody[SubscriptionCreateBody]) -> SubscriptionView:
    refuse_nul(msgspec.to_builtins(data))
    created = await engine.service.create(data)
    return subscription_view(created, with_secret=True)


@get("/", summary="List subscriptions, oldest first", responses=responses(400, 503))
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


@get(_ID, summary="One subscription (without its secret)", responses=responses(400, 404, 503))
async def get_subscription(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionView:
    return subscription_view(await engine.service.get(subscription_id))


@get(
    f"{_ID}/health",
    summary="One subscription's health: waiting, oldest age, in flight, success and latency (5 min, 1 h), dead",
    responses=responses(400, 404, 503),
)
async def subscription_health(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionHealth:
    return await read_subscription_health(engine, await engine.subscriptions.get(subscription_id))


@patch(
    _ID,
    summary="Change a subscription; `active` pauses and resumes it",
    responses=responses(400, 404, 409, 413, 422, 503),
)
async def update_subscription(
    engine: EngineDep, subscription_id: FromPath[uuid.UUID], data: JSONBody[SubscriptionUpdateBody]
) -> SubscriptionView:
    refuse_nul(msgspec.to_builtins(data))
    return subscription_view(await engine.service.update(subscription_id, data))


@delete(
    _ID,
    summary="Delete a subscription, its backlog and its delivery log",
    responses=responses(400, 404, 503),
)
async def delete_subscription(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> None:
    await engine.service.delete(subscription_id)


@post(
    _ID + "/rotate-secret",
    status_code=200,
    summary="A new signing secret (in the answer, this once)",
    description="The previous secret keeps signing beside the new one for WEBHOOK_SECRET_GRACE.",
    responses=responses(400, 404, 503),
)
async def rotate_secret(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionView:
    return subscription_view(await engine.service.rotate_secret(subscription_id), with_secret=True)


@post(
    _ID + "/test",
    status_code=200,
    summary="Send a signed test event now",
    description="A synthetic event of the first catalog type the subscription matches, signed like a real "
    "delivery, sent at once (not queued) and not recorded in the delivery log. The answer has the "
    "receiver's status, latency and the start of its body.",
    responses=responses(400, 404, 422, 503),
)
async def send_test_event(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> DeliveryTestResult:
    return await send_now(engine, subscription_id)


@post(
    _ID + "/replay",
    status_code=200,
    summary="Deliver stored events again to this subscription",
    description=f"A time (`since`, `until`) or sequence (`from_seq`, `to_seq`) range, optionally narrowed by "
    f"event type patterns. Its live consumer is not touched. At most {MAX_REPLAY_EVENTS} events per call: "
    "when `truncated`, call again with `from_seq` = `next_seq`. `dry_run` lists what would be sent.",
    responses=responses(400, 404, 409, 413, 422, 503),
)
async def replay_events(
    engine: EngineDep, subscription_id: FromPath[uuid.UUID], data: JSONBody[ReplayBody]
) -> ReplayResult:
    sub = await engine.service.get(subscription_id)
    spec = ReplayRange(
        since=parse_when(data.since, "since") if data.since is not None else None,
        until=parse_when(data.until, "until") if data.until is not None else None,
        from_seq=data.from_seq,
        to_seq=data.to_seq,
        event_types=data.event_types,
        dry_run=data.dry_run,
    )
    return await replay_subscription(engine, sub, spec)


@post(
    "/preview",
    status_code=200,
    summary="Preview a draft subscription on stored events: what would be sent",
    description=f"Runs the draft (patterns, integration, filters, template, redaction) on the newest `limit` "
    f"stored events of its types (default {DEFAULT_PREVIEW_EVENTS}, at most {MAX_PREVIEW_EVENTS}), newest first, "
    "through the same code the workers run: for each, `send` with the exact body and content type, `skip` with "
    "the reason, or `fail` with the template's error. Nothing is saved, sent or recorded; a draft that would be "
    "refused on save is refused here with the same field error.",
    responses=responses(400, 413, 422, 503),
)
async def preview_subscription(engine: EngineDep, data: JSONBody[PreviewBody]) -> PreviewResult:
    refuse_nul(msgspec.to_builtins(data))
    return await preview(engine, data)


router = Router(
    path="/api/subscriptions",
    tags=["subscriptions"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[
        preview_subscription,
        create_subscription,
        list_subscriptions,
        get_subscription,
        subscription_health,
        update_subscription,
        delete_subscription,
        rotate_secret,
        send_test_event,
        replay_events,
    ],
)
