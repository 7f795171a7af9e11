"""One attempt of one event against one subscription: render, sign, write ahead, send, classify, record.

The attempt's record is written ahead (``pending``, in the attempts stream)
before the request goes out, and the record of the answer completes it: a
worker killed mid-request leaves the log a ``pending`` attempt ("outcome
unknown"), never a request the log did not see. A request whose record
cannot be written ahead (NATS unavailable) is not sent.

Shared by the live path (a subscription's pull loop) and redeliveries; the
fate of the attempt is an :data:`~consumers.engine.Outcome`, decided once by
:func:`~consumers.engine.decide`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from integrations import Integration, OutgoingRequest, Transport
from integrations.core import ClientTls, build_headers
from streams import (
    CAUSATION_HEADER,
    DEAD_LETTER_SUBJECT_ROOT,
    NATS_ERRORS,
    USER_AGENT,
    Event,
    Settings,
    build_event,
    causation_token,
    encode_event,
)
from streams.telemetry import delivery_span, tracing_on

from .._messages import AttemptRecord, AttemptTrigger, CountedSkip, DeadLetter, Subscription, delivery_id_for
from ..rules import RenderFailed, Rules, Skip
from ..secrets import mask_request_headers
from ._batcher import AttemptBatcher
from ._http import DeliveryClient
from ._metrics import DeliveryOutcome, WorkerMetrics
from ._outcome import Dead, Delivered, Gone, Outcome, Retry, decide, logged_as
from ._retry import RetryPolicy, classify
from ._sizing import fit_record, omitted

__all__ = (
    "EVENT_SOURCE",
    "LOOP_NAMESPACE",
    "OUTCOME_UNKNOWN",
    "Attempted",
    "Deliverer",
    "client_tls",
    "delivery_headers",
    "loop_announcement",
)

_log = logging.getLogger("turbohooks.worker")

LOOP_NAMESPACE: Final = uuid.UUID("0b7e3c52-6d1a-4f8e-9c2b-5a4d3e2f1c70")
"""The announcement of a stopped chain has an id derived from the stopped event's: published once."""

EVENT_SOURCE: Final = "/turbo"
"""``ce-source`` of deliveries."""

OUTCOME_UNKNOWN: Final = "outcome unknown: sent, no answer recorded (in flight, or the worker stopped)"
"""The error of an attempt written ahead, until its answer replaces the record."""

_encoder: Final = msgspec.json.Encoder()
_LETTER_OVERHEAD: Final = 4096
"""Bytes of a refused letter besides its message's (ids, times, field names, headers), with room to spare."""
_LETTER_FIELDS: Final = 256
"""Bytes of a dead letter besides its event, its last attempt and its reason."""


class Attempted(msgspec.Struct, frozen=True):
    """An attempt made: its log record and its fate."""

    record: AttemptRecord
    outcome: Outcome


def delivery_headers(
    sub: Subscription,
    integration: Integration[Any],
    event: Event,
    request: OutgoingRequest,
    *,
    source: str = EVENT_SOURCE,
    now: datetime | None = None,
    delivery_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """Every header of one delivery of ``event`` to ``sub``: identity, signatures, custom headers.

    Signed by the subscription's scheme: ``v1`` with the current secret, ``v1a``
    with the ed25519 signing key, ``both`` with both; during a rotation's grace
    period the previous secret and key sign beside them. Used by the workers and by the gateway's test send alike.
    """
    # What a receiver passes back (``causation``) when it publishes an event because of this
    # delivery: loop prevention follows the chain through it.
    causation = {CAUSATION_HEADER: causation_token(event, sub.id)}
    if not integration.signs:
        return {**sub.headers, **request.headers, **causation, "User-Agent": USER_AGENT}
    moment = now or datetime.now(UTC)
    in_grace = sub.previous_secret_expires_at is not None and sub.previous_secret_expires_at > moment
    secrets: list[str] = []
    if sub.signature_scheme != "v1a":
        secrets.append(sub.secret)
        if sub.previous_secret and in_grace:
            secrets.append(sub.previous_secret)
    keys: list[str] = []
    if sub.signature_scheme != "v1" and sub.signing_key:
        keys.append(sub.signing_key)
        if sub.previous_signing_key and in_grace:
            keys.append(sub.previous_signing_key)
    if not secrets and not keys:  # a v1a subscription without its key (never saved so): sign v1 rather than not at all
        secrets.append(sub.secret)
    return build_headers(
        msg_id=delivery_id or delivery_id_for(sub.id, event.event_id),
        timestamp=int(moment.timestamp()),
        body=request.body,
        secrets=secrets,
        event_type=event.event_type,
        event_id=event.event_id,
        event_time=event.timestamp,
        source=source,
        user_agent=USER_AGENT,
        extra={**sub.headers, **request.headers, **causation},
        signing_keys=keys,
        # The integration's (JSON) or the payload template's declared type.
        content_type=next((v for k, v in request.headers.items() if k.lower() == "content-type"), "application/json"),
    )


def loop_announcement(sub: Subscription, event: Event, max_depth: int) -> Event:
    """The ``system.causation_loop_stopped`` event of ``event``'s chain, stopped at ``sub``.

    Its id derives from the stopped event's, so every subscription (and worker copy) that
    stops the same event publishes the same announcement, stored once (``Nats-Msg-Id``).
    It starts no chain of its own: an announcement is never stopped as part of the loop.
    """
    depth = event.chain.depth if event.chain is not None else 0
    return build_event(
        event_type="system.causation_loop_stopped",
        entity_id=str(sub.id),
        data={
            "current": {
                "subscription_id": str(sub.id),
                "subscription_name": sub.name,
                "url": sub.url,
                "stopped_event_id": str(event.event_id),
                "stopped_event_type": event.event_type,
                "causation_id": str(event.causation_id) if event.causation_id else None,
                "depth": depth,
                "max_depth": max_depth,
            }
        },
        actor={"type": "system", "name": "turbohooks-worker"},
        event_id=uuid.uuid5(LOOP_NAMESPACE, str(event.event_id)),
        causation_id=event.event_id,
    )


def client_tls(sub: Subscription) -> ClientTls | None:
    """The TLS options of connections to ``sub``'s receiver (client certificate, CA bundle), if it has any."""
    if not (sub.tls_client_cert or sub.tls_client_key or sub.tls_ca_bundle):
        return None
    return ClientTls(client_cert=sub.tls_client_cert, client_key=sub.tls_client_key, ca_bundle=sub.tls_ca_bundle)


def _counted_as(outcome: Outcome, policy: RetryPolicy | None) -> DeliveryOutcome:
    """The metrics' outcome: a failure without a retry policy (manual retry, replay) is not dead-lettered."""
    match outcome:
        case Delivered():
            return "success"
        case Retry():
            return "retry"
        case Dead():
            return "dead" if policy is not None else "failed"
        case Gone():
            return "failed"


def _response_bytes(headers: dict[str, str], body: str) -> int:
    """The answer's size: its ``Content-Length`` (the body read is capped), else what was read."""
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return int(length)
    return len(body)


def _render_failed(
    sub: Subscription,
    event: Event,
    failed: RenderFailed,
    *,
    attempt: int,
    trigger: AttemptTrigger,
    stream_seq: int | None,
) -> Attempted:
    """The subscription's template failed on this event: a failed attempt, no request sent.

    Dead at once, not retried: the same template fails the same event every time; the
    dead letter keeps the event for a recover once the template is fixed."""
    now = datetime.now(UTC)
    record = AttemptRecord(
        attempt_id=uuid.uuid4(),
        delivery_id=delivery_id_for(sub.id, event.event_id),
        subscription_id=sub.id,
        event_id=event.event_id,
        event_type=event.event_type,
        attempt=attempt,
        outcome="failed",
        trigger=trigger,
        stream_seq=stream_seq,
        request_url=sub.url,
        error=failed.error,
        started_at=now,
        finished_at=now,
    )
    return Attempted(record=record, outcome=Dead(reason=failed.error))


class Deliverer:
    """Turns one event into one attempt against one subscription; shared by live and redelivery paths."""

    def __init__(
        self,
        settings: Settings,
        js: JetStreamContext,
        client: DeliveryClient,
        *,
        max_payload: Callable[[], int] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        """Where every attempt is counted (the worker's; a registry nobody serves otherwise)."""
        self.js = js
        self.client = client
        self.attempts = 0
        """HTTP attempts made by this process (for metrics, and to see copies share the work)."""
        self.batcher = AttemptBatcher(js, max_payload=max_payload)
        self.transports: dict[str, Transport] = {}
        """Custom transports of integrations that have one, opened by the worker."""
        self.loop_stops = 0
        """Events not delivered by this process for loop prevention (own delivery's consequence, or too deep)."""

    async def attempt(
        self,
        sub: Subscription,
        rules: Rules,
        event: Event,
        raw: bytes,
        *,
        attempt: int,
        trigger: AttemptTrigger,
        stream_seq: int | None,
        policy: RetryPolicy | None,
        trace: Mapping[str, str] | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> Attempted | Skip:
        """One attempt, shaped by the subscription's compiled ``rules``; a :class:`Skip` if nothing is sent.

        With tracing on the attempt is a span, a child of the ``traceparent`` in ``trace`` (the JetStream
        message's headers), and the receiver gets its ``traceparent``: a header outside the signature,
        which covers ``id.timestamp.body`` only.

        ``admit`` is awaited once the event is known to be sent, before anything
        else: the rate limit's slot (a skipped event takes none).
        """
        prepared = rules.prepare(event, raw)
        if isinstance(prepared, Skip):
            if prepared.reason == "loop":
                await self._loop_stopped(sub, event)
            return prepared
        if isinstance(prepared, RenderFailed):
            return _render_failed(sub, event, prepared, attempt=attempt, trigger=trigger, stream_seq=stream_seq)
        if admit is not None:
            await admit()
        request, integration, config = prepared.request, rules.integration, rules.config
        delivery_id = delivery_id_for(sub.id, event.event_id)
        started = datetime.now(UTC)
        headers = delivery_headers(sub, integration, event, request, now=started, delivery_id=delivery_id)
        span = None
        if tracing_on():  # off: this branch is the whole cost (benchmarks: hot path)
            span = delivery_span(
                trace,
                event_type=event.event_type,
                event_id=event.event_id,
                delivery_id=delivery_id,
                subscription_id=sub.id,
                integration=integration.name,
                attempt=attempt,
            )
            headers.update(span.headers)
        # Recorded with the custom header values (credentials) masked; signatures kept. Masked
        # once: the answer's record reuses it unless a transport says it sent other headers
        # (masking twice was ~7 % of a loaded worker's samples, py-spy).
        masked = mask_request_headers(headers, sub.headers)
        # Written ahead: stored before the request goes out, so that the log shows
        # every request a receiver got, even if this process dies before the answer.
        pending = AttemptRecord(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery_id,
            subscription_id=sub.id,
            event_id=event.event_id,
            event_type=event.event_type,
            attempt=attempt,
            outcome="pending",
            trigger=trigger,
            stream_seq=stream_seq,
            request_url=request.url,
            request_headers=masked,
            error=OUTCOME_UNKNOWN,
            started_at=started,
            finished_at=started,
        )
        await self.batcher.write_ahead(pending)
        self.attempts += 1
        transport = self.transports.get(integration.name)
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            if transport is not None:
                result = await transport.send(request, event, sub.url, config)
                # What the transport actually sent, when it says (GitHub: the API calls made).
                url, body, sent = (
                    result.request_url or request.url,
                    result.request_body or request.body,
                    result.request_headers or headers,
                )
            else:
                result = await self.client.post(request.url, request.body, headers, tls=client_tls(sub))
                url, body, sent = request.url, request.body, headers
        finally:
            metrics.in_flight -= 1
        finished = datetime.now(UTC)
        outcome = decide(
            classify(result.status, result.error_kind),
            attempt=attempt,
            policy=policy,
            retry_after=lambda: integration.retry_after(result.status, result.headers, result.body),
            finished=finished,
        )
        metrics.answer(integration.name, result.status, result.error_kind)
        metrics.delivery(
            integration.name,
            _counted_as(outcome, policy),
            seconds=result.latency_ms / 1000,
            request_bytes=len(body),
            response_bytes=_response_bytes(result.headers, result.body),
            subscription_id=sub.id,
        )
        record = msgspec.structs.replace(
            pending,
            outcome=logged_as(outcome),
            request_url=url,
            request_headers=masked if sent is headers else mask_request_headers(sent, sub.headers),
            payload=body,
            response_code=result.status,
            response_headers=result.headers,
            response_body=result.body,
            error=result.error,
            latency_ms=result.latency_ms,
            finished_at=finished,
            next_attempt_at=finished + timedelta(seconds=outcome.delay) if isinstance(outcome, Retry) else None,
            disable_subscription=outcome.reason if isinstance(outcome, Gone) else None,
        )
        if span is not None:
            span.end(outcome=record.outcome, status=result.status, latency_ms=result.latency_ms, error=result.error)
        return Attempted(record=record, outcome=outcome)

    async def _loop_stopped(self, sub: Subscription, event: Event) -> None:
        """Count a loop stop; a chain stopped for its depth (not an own reply) is announced, once per event."""
        self.loop_stops += 1
        chain = event.chain
        if chain is None or chain.subscription_id == sub.id:
            return  # an integration's own reply: expected, not an incident
        announcement = loop_announcement(sub, event, self.settings.max_causation_depth)
        try:
            await self.js.publish(
                announcement.subject,
                encode_event(announcement),
                headers={"Nats-Msg-Id": str(announcement.event_id)},
            )
        except NATS_ERRORS as exc:  # the event is skipped either way; another copy's stop announces it
            _log.warning("subscription %s: could not announce the loop stopped at %s (%s)", sub.id, event.event_id, exc)

    async def record(self, record: AttemptRecord) -> None:
        """Publish the attempt for the recorder; awaited, so the log is written before the ack."""
        await self.batcher.record(record)

    def skipped(self, sub: Subscription, reason: CountedSkip, msg: Msg | None = None) -> None:
        """Count an event of ``sub`` not sent for ``reason`` (stats, metrics); ``msg`` is acknowledged once stored.

        No request, no delivery-log row: only the count, in the next attempts batch.
        """
        self.metrics.delivery(sub.integration, reason, subscription_id=sub.id)
        self.batcher.count(sub.id, reason, msg)

    async def dead_letter(
        self, sub: Subscription, raw: bytes, stream_seq: int, record: AttemptRecord, reason: str = ""
    ) -> None:
        """Copy an event whose attempts ran out to the dead-letter stream, its last attempt attached.

        The letter fits the server's max_payload: the attempt gives up its body
        first, and an event too large for a letter leaves a reference instead.
        """
        limit = self.batcher.limit
        why = reason or (record.error or f"HTTP {record.response_code}")
        letter = self._letter(sub, raw, stream_seq, record, limit, why)
        if len(letter) > limit:  # the event itself is too large for a letter
            event = omitted("event", raw, stream=self.settings.stream_name, stream_seq=stream_seq)
            letter = self._letter(sub, event, stream_seq, record, limit, why)
        await self.js.publish(
            f"{DEAD_LETTER_SUBJECT_ROOT}.{sub.id.hex}",
            letter,
            headers={"Nats-Msg-Id": f"{record.delivery_id}:{stream_seq}"},
        )

    @staticmethod
    def _letter(
        sub: Subscription, event: bytes, stream_seq: int, record: AttemptRecord, limit: int, reason: str
    ) -> bytes:
        record, _ = fit_record(record, limit - len(event) - len(reason) - _LETTER_FIELDS)
        letter = DeadLetter(
            subscription_id=sub.id,
            delivery_id=record.delivery_id,
            event=msgspec.Raw(event),
            stream_seq=stream_seq,
            last_attempt=record,
            dead_at=datetime.now(UTC),
            reason=reason,
        )
        return _encoder.encode(letter)

    async def refuse(
        self, sub: Subscription, raw: bytes, subject: str, stream_seq: int, reason: str, *, max_payload: int
    ) -> None:
        """Put a message that is not a deliverable event in the dead letters, with why; never sent.

        Its bytes are kept (cut to fit a NATS message of ``max_payload`` bytes, base64
        inflating them by a third; the events stream has them whole at ``stream_seq``).
        """
        cap = max(0, (max_payload - _LETTER_OVERHEAD - len(reason) - len(subject)) * 3 // 4)
        letter = DeadLetter(
            subscription_id=sub.id,
            delivery_id=None,
            stream_seq=stream_seq,
            dead_at=datetime.now(UTC),
            cause="refused",
            reason=reason,
            subject=subject,
            raw=raw[:cap],
            raw_truncated=len(raw) > cap,
        )
        await self.js.publish(
            f"{DEAD_LETTER_SUBJECT_ROOT}.{sub.id.hex}",
            _encoder.encode(letter),
            headers={"Nats-Msg-Id": f"refused:{sub.id.hex}:{stream_seq}"},
        )
