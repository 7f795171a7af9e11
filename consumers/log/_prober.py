"""Self-healing endpoints: a disabled subscription is probed with a signed ping, and re-enabled by the first 2xx.

A subscription disabled by the recorder (410 Gone, or failing for the period)
with ``auto_recover`` keeps its backlog in its durable consumer. The prober
sends its receiver a ``system.subscription_probe`` event, rendered by the
subscription's integration and signed like a delivery, through a
:class:`~consumers.engine.DeliveryClient` that checks the address it dials (the
deliveries' SSRF rules). The first probe is ``WEBHOOK_PROBE_DELAY`` after the
disable, each failed one doubles the pause up to ``WEBHOOK_PROBE_MAX_DELAY``.
The first 2xx re-enables the subscription (counters reset): the workers start
its loop and its consumer hands them the backlog in stream order. Each probe is
an attempt of the delivery log (trigger ``probe``); a failed probe and the
recovery are ``system.*`` events.

It runs beside the recorder (``turbohooks recorder``, and ``up``'s): the process
that disables subscriptions is the one that heals them, and it writes the log.
Several recorders probe the same due subscription at most once each per due
time: the probe event's id (its ``webhook-id``) derives from the subscription's
probe state, so the receiver can deduplicate them, the attempts land in one
delivery row, and both save the same next state and announce it under the same
event id (stored once). Probes only reach integrations that POST to the
subscription's URL (not e-mail, not GitHub's API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from integrations import INTEGRATIONS, OutgoingRequest, requires_url
from streams import USER_AGENT, Event, Settings, build_event, encode_event

from .._messages import AttemptRecord, Subscription, delivery_id_for
from ..engine import DeliveryClient, client_tls, delivery_headers
from ..rules import compile_rules
from ..secrets import mask_request_headers
from ._store import DeliveryStore

if TYPE_CHECKING:
    from ..subscriptions import SubscriptionService

__all__ = ("PROBE_NAMESPACE", "Prober", "probe_delay", "probe_event")

_log = logging.getLogger("turbohooks.prober")

PROBE_NAMESPACE: Final = uuid.UUID("7f0c5a1e-3b2d-4c6e-8a9f-1d2e3f4a5b6c")
_SOURCE: Final = "/turbohooks/probe"
_TIMEOUT: Final = 10.0
"""A probe waits at most this long (less if WEBHOOK_TIMEOUT is shorter)."""
_POLL_MAX: Final = 5.0
"""The longest pause between two looks for due probes."""


def probe_delay(settings: Settings, failed_probes: int) -> float:
    """Seconds until the next probe after ``failed_probes`` failed ones: the first delay, doubling, capped."""
    return float(min(settings.webhook_probe_delay * 2 ** min(failed_probes, 32), settings.webhook_probe_max_delay))


def probe_event(sub: Subscription) -> Event:
    """The ping of ``sub``'s next probe; its id derives from the probe state, the same for every prober."""
    return build_event(
        event_type="system.subscription_probe",
        entity_id=str(sub.id),
        data={
            "current": {
                "subscription_id": str(sub.id),
                "subscription_name": sub.name,
                "probe": sub.probe_attempts + 1,
                "disabled_reason": sub.disabled_reason,
                "message": "turbohooks checks whether this endpoint is back; answer 2xx to re-enable it.",
            }
        },
        actor={"type": "system", "name": "turbohooks-prober"},
        event_id=uuid.uuid5(PROBE_NAMESPACE, f"{sub.id}:{sub.probe_attempts}:{sub.next_probe_at}"),
    )


class Prober:
    """Probes the due disabled subscriptions until stopped; see the module's docstring."""

    def __init__(self, settings: Settings, deliveries: DeliveryStore, service: SubscriptionService) -> None:
        self.settings = settings
        self.deliveries = deliveries
        self.service = service
        self.probes = 0
        """Probes sent by this process."""
        self.recovered = 0
        """Subscriptions this process re-enabled."""
        self._kinds = sorted(name for name, integration in INTEGRATIONS.items() if requires_url(integration))
        self._poll = min(max(settings.webhook_probe_delay / 4, 0.05), _POLL_MAX)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe what is due, look again every few seconds, until ``stop`` is set."""
        async with DeliveryClient(
            timeout=min(self.settings.webhook_timeout, _TIMEOUT),
            response_body_cap=self.settings.response_body_cap,
            user_agent=USER_AGENT,
            max_connections=8,
            guard_addresses=True,
            allowed_hosts=self.settings.webhook_allowed_hosts,
        ) as client:
            while not stop.is_set():
                try:
                    await self.probe_due(client)
                except Exception as exc:  # noqa: BLE001  a database or NATS outage: the next round tries again
                    _log.warning("prober: a round failed (%r); trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll)

    async def probe_due(self, client: DeliveryClient) -> int:
        """Probe every due subscription once (schedule the unscheduled); how many were probed."""
        moment = datetime.now(UTC)
        probed = 0
        for sub in await self.service.store.due_probes(moment, self._kinds):
            if sub.next_probe_at is None:
                await self.service.schedule_probe(sub, moment + timedelta(seconds=probe_delay(self.settings, 0)))
                continue
            await self.probe(client, sub)
            probed += 1
        return probed

    async def probe(self, client: DeliveryClient, sub: Subscription) -> bool:
        """One probe of ``sub``: sent, recorded, then the subscription re-enabled (2xx) or rescheduled."""
        event = probe_event(sub)
        raw = encode_event(event)
        rules = compile_rules(sub)
        # The integration's own body of the ping (Slack's message, the envelope for a webhook); an
        # integration that declines system events gets the envelope. Filters and templates do not apply:
        # the probe asks whether the endpoint answers, not what it wants.
        request = rules.integration.render(event, raw, sub.url, rules.config) or OutgoingRequest(
            url=sub.url, body=raw, headers={"Content-Type": "application/json"}
        )
        delivery_id = delivery_id_for(sub.id, event.event_id)
        started = datetime.now(UTC)
        headers = delivery_headers(
            sub, rules.integration, event, request, source=_SOURCE, now=started, delivery_id=delivery_id
        )
        result = await client.post(request.url, request.body, headers, tls=client_tls(sub))
        finished = datetime.now(UTC)
        self.probes += 1
        ok = result.status is not None and 200 <= result.status < 300 and result.error is None
        record = AttemptRecord(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery_id,
            subscription_id=sub.id,
            event_id=event.event_id,
            event_type=event.event_type,
            attempt=sub.probe_attempts + 1,
            outcome="success" if ok else "failed",
            trigger="probe",
            request_url=request.url,
            request_headers=mask_request_headers(headers, sub.headers),
            payload=request.body,
            response_code=result.status,
            response_headers=result.headers,
            response_body=result.body,
            error=result.error,
            latency_ms=result.latency_ms,
            started_at=started,
            finished_at=finished,
        )
        # The prober lives in the recorder's process, the log's writer: written directly. A failed
        # probe of a disabled subscription never disables anything (it is disabled), hence 0.
        await self.deliveries.record(
            [record], disable_after_failures=0, disable_after_period=self.settings.webhook_disable_after_period
        )
        answer = {"probe": sub.probe_attempts + 1, "response_code": result.status, "error": result.error}
        if ok:
            if await self.service.recover(sub, answer) is not None:
                self.recovered += 1
                _log.warning("prober: subscription %s (%s) answered %s: re-enabled", sub.id, sub.name, result.status)
            return True
        next_at = finished + timedelta(seconds=probe_delay(self.settings, sub.probe_attempts + 1))
        await self.service.schedule_probe(sub, next_at, failed=answer)
        return False
