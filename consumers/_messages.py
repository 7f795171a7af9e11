"""Wire shapes of the delivery engine: subscriptions, delivery attempts, dead letters.

These Structs travel through NATS (the subscription KV mirror, the internal
attempts stream, the dead-letter stream) and are what the SQL store returns.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

__all__ = (
    "DELIVERY_NAMESPACE",
    "AttemptBatch",
    "AttemptOutcome",
    "AttemptRecord",
    "AttemptTrigger",
    "CountedSkip",
    "DeadLetter",
    "DeadLetterCause",
    "DeliveryStatus",
    "Ordering",
    "RateLimit",
    "SignatureScheme",
    "SkipCount",
    "Subscription",
    "SubscriptionStatus",
    "delivery_id_for",
)

SubscriptionStatus = Literal["active", "paused", "disabled"]
SignatureScheme = Literal["v1", "v1a", "both"]
"""How deliveries are signed: ``v1`` HMAC-SHA256 (the shared secret), ``v1a`` ed25519 (a public key), or both."""
DeliveryStatus = Literal["pending", "success", "failed"]
AttemptOutcome = Literal["success", "retrying", "failed", "pending"]
"""Of one attempt: delivered; failed but will be retried; failed for good; sent, no answer recorded yet.

``pending`` is the record a worker writes ahead, before it sends the request;
the record of the answer replaces it (same ``attempt_id``). One that stays
pending is a request whose outcome is unknown: the worker stopped before the answer."""
Ordering = Literal["none", "strict", "entity"]
"""How a subscription's deliveries are ordered: in parallel (``none``), one at a time in stream
order (``strict``), or one at a time per entity and in parallel across entities (``entity``)."""
AttemptTrigger = Literal["live", "manual", "replay", "test", "probe"]
"""Why the attempt was made: the live consumer, a manual retry, a replay, a test send, a probe of a
disabled subscription (self-healing)."""

DELIVERY_NAMESPACE: Final = uuid.UUID("5d1b6a3e-7c4f-4f0e-9a57-0c1d2b3e4f50")


def delivery_id_for(subscription_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    """The delivery of one event to one subscription has one id, whatever the attempt.

    It is the ``webhook-id`` header too, so receivers deduplicate retries by it.
    """
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}:{event_id}")


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``count`` deliveries per ``per``, across every worker copy."""

    count: int
    per: Literal["second", "minute"] = "second"

    @property
    def per_second(self) -> float:
        return self.count if self.per == "second" else self.count / 60.0


class Subscription(msgspec.Struct, kw_only=True):
    """A webhook subscription, as stored in SQL and mirrored to the workers."""

    id: uuid.UUID
    name: str
    url: str
    event_types: list[str]
    """Patterns as the user wrote them: ``issue.created``, ``issue.*``, ``*.created``, ``*``."""
    integration: str = "webhook"
    integration_config: dict[str, Any] = msgspec.field(default_factory=dict)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Custom headers sent with every delivery."""
    status: SubscriptionStatus = "active"
    disabled_reason: str | None = None
    secret: str = ""
    """``whsec_<base64>``: signs deliveries. Never shown but on create and rotate."""
    previous_secret: str | None = None
    """The secret before the last rotation, still signing until ``previous_secret_expires_at``."""
    previous_secret_expires_at: datetime | None = None
    filters: dict[str, Any] | None = None
    """The filter document: only events it matches (after the event-type match) are delivered."""
    retry_schedule: list[float] | None = None
    """Delays in seconds before each retry; ``None`` uses the global schedule."""
    max_in_flight: int | None = None
    """Concurrent deliveries for this subscription; ``None`` uses ``WEBHOOK_MAX_IN_FLIGHT``."""
    consecutive_failures: int = 0
    first_failure_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    signature_scheme: SignatureScheme = "v1"
    signing_key: str | None = None
    """``whsk_<base64 ed25519 seed>``: signs ``v1a`` signatures (a secret, stored like ``secret``)."""
    previous_signing_key: str | None = None
    """The signing key before the last rotation, signing beside it until ``previous_secret_expires_at``."""
    tls_client_cert: str | None = None
    """PEM: the client certificate (and its chain) presented to the receiver (mutual TLS)."""
    tls_client_key: str | None = None
    """PEM: the client certificate's private key (a secret, stored like ``secret``)."""
    tls_ca_bundle: str | None = None
    """PEM: the CAs the receiver's certificate is verified against, instead of the system's."""
    template: str | None = None
    """A Jinja2 (sandboxed) template of the request body; ``None`` sends the integration's own body."""
    template_content_type: str | None = None
    """The rendered body's content type; ``None`` means ``application/json`` (the output must parse)."""
    rate_limit: RateLimit | None = None
    """At most so many deliveries per second or minute, across workers; ``None``: no limit."""
    ordering: Ordering = "none"
    ordering_key: str | None = None
    """With ``ordering: entity``: the dotted path of the key (default ``entity_id``)."""
    redact_fields: list[str] = msgspec.field(default_factory=list)
    """Field names or dotted paths masked before rendering, beside the global list."""
    auto_recover: bool = True
    """A disabled subscription is probed and re-enabled by itself when its receiver answers 2xx."""
    probe_attempts: int = 0
    """Probes of a disabled subscription so far (reset when it is enabled)."""
    next_probe_at: datetime | None = None
    """When a disabled subscription is probed next."""

    @property
    def active(self) -> bool:
        return self.status == "active"


class AttemptRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The outcome of one delivery attempt, published by a worker for the recorder."""

    attempt_id: uuid.UUID
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    """1 for the first attempt of this trigger; JetStream's delivery count for live ones."""
    outcome: AttemptOutcome
    trigger: AttemptTrigger = "live"
    stream_seq: int | None = None
    request_url: str = ""
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Sent headers, signatures included (they are not secrets: they cannot be replayed elsewhere)."""
    payload: bytes = b""
    """The request body sent (the event envelope, or the integration's shape of it)."""
    response_code: int | None = None
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)
    response_body: str | None = None
    """Capped at ``WEBHOOK_RESPONSE_BODY_CAP`` bytes."""
    error: str | None = None
    latency_ms: float | None = None
    started_at: datetime
    finished_at: datetime
    next_attempt_at: datetime | None = None
    """When the next attempt is due, for ``retrying`` outcomes."""
    disable_subscription: str | None = None
    """Set when the answer itself disables the subscription (410 Gone): the reason."""


CountedSkip = Literal["filtered", "throttled", "loop"]
"""Events not sent that the stats count: excluded by the subscription's filter, held back by
its rate limit, stopped by loop prevention."""


class SkipCount(msgspec.Struct, kw_only=True, frozen=True):
    """``count`` events of one subscription not sent for ``reason`` in the minute starting at ``minute``."""

    subscription_id: uuid.UUID
    reason: CountedSkip
    minute: datetime
    count: int


class AttemptBatch(msgspec.Struct, kw_only=True):
    """Attempt records published together: one JetStream write for many deliveries."""

    batch_id: uuid.UUID
    records: list[AttemptRecord]
    skips: list[SkipCount] = msgspec.field(default_factory=list)
    """Events acknowledged without a request (filtered, …), counted: they travel with the records."""


DeadLetterCause = Literal["delivery_failed", "refused"]
"""Why an event is in the dead letters: its attempts ran out (or the receiver refused it for good);
or the worker refused the message itself (undecodable, beyond the decoding bounds, a type outside
the catalog or other than its subject's), so it was never sent."""


def _null() -> msgspec.Raw:
    return msgspec.Raw(b"null")


class DeadLetter(msgspec.Struct, kw_only=True):
    """An event that will not be delivered to one subscription, with why; kept to be inspected and recovered.

    ``cause="delivery_failed"``: the event envelope is in ``event``, the last
    attempt in ``last_attempt``. ``cause="refused"``: the message was not a
    deliverable event; its bytes are in ``raw`` (``event`` is ``null``,
    ``delivery_id`` too when no event id could be read). Either way ``reason``
    says why, and ``stream_seq`` is where the message is in the events stream.
    """

    subscription_id: uuid.UUID
    delivery_id: uuid.UUID | None
    event: msgspec.Raw = msgspec.field(default_factory=_null)
    """The event envelope as it was in the events stream (``null`` for refused messages: see ``raw``)."""
    stream_seq: int
    last_attempt: AttemptRecord | None = None
    """The last attempt; ``None`` for refused messages (never sent)."""
    dead_at: datetime
    cause: DeadLetterCause = "delivery_failed"
    reason: str = ""
    """Why, in words: the last attempt's failure, or what decoding refused (naming the field)."""
    subject: str | None = None
    """The subject the message was stored under (refused messages)."""
    raw: bytes | None = None
    """The message's bytes as stored (refused messages; base64 in JSON), cut when too large: see ``raw_truncated``."""
    raw_truncated: bool = False
    """``raw`` holds only the start of the message (it did not fit a NATS message); the stream has it all."""
