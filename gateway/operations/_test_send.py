"""Test-send: a signed synthetic event, delivered now, the receiver's answer returned (nothing recorded)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

import msgspec

from consumers import DeliveryClient, client_tls, delivery_headers
from consumers.rules import RenderFailed, Skip, rules_for
from streams import USER_AGENT, EventValidationError, build_event, encode_event, match_event_types

from ._audit import record_audit

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("DeliveryTestResult", "send_test_event")

_TEST_SOURCE: Final = "/turbo/test"
_TEST_TIMEOUT: Final = 10.0
"""A test send waits at most this long (less than WEBHOOK_TIMEOUT may allow): a person is waiting."""


class DeliveryTestResult(msgspec.Struct, kw_only=True):
    """The receiver's answer to a signed test event (not recorded in the delivery log)."""

    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    url: str
    success: bool
    """A 2xx answer."""
    status: int | None
    """The receiver's HTTP status; ``null`` when it could not be reached."""
    latency_ms: float
    body: str
    """The start of the answer's body (``WEBHOOK_RESPONSE_BODY_CAP`` bytes at most)."""
    truncated: bool
    error: str | None = None


async def send_test_event(engine: Engine, subscription_id: uuid.UUID) -> DeliveryTestResult:
    """Send a signed synthetic event to the subscription now and return the receiver's answer.

    The event is of the first catalog type the subscription matches, signed like
    a real delivery, sent at once (not queued, whatever the subscription's status)
    and not recorded in the delivery log. ``NotFoundError`` for an unknown
    subscription; ``EventValidationError`` when its integration sends no such event.
    """
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
    rules = rules_for(sub, settings)
    # A test event is synthetic: it is sent whatever the subscription's filter says.
    prepared = rules.prepare(event, raw, test=True)
    if isinstance(prepared, Skip):
        raise EventValidationError("integration", f"the {sub.integration} integration sends no {event.event_type}")
    if isinstance(prepared, RenderFailed):
        raise EventValidationError("template", prepared.error)
    request = prepared.request
    headers = delivery_headers(sub, rules.integration, event, request, source=_TEST_SOURCE)
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
        result = await client.post(request.url, request.body, headers, tls=client_tls(sub))
    await record_audit(
        engine, None, "test", f"subscription:{sub.id}", {"event_type": event.event_type, "status": result.status}
    )
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
