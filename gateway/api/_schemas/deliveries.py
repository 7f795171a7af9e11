"""The delivery log's pages and details, and retry's answer."""

from __future__ import annotations

import uuid

import msgspec

from consumers import AttemptDetail, DeliverySummary

__all__ = ("DeliveryDetailView", "DeliveryPage", "RetryQueued")


class DeliveryPage(msgspec.Struct, kw_only=True):
    """A page of the delivery log, newest first."""

    items: list[DeliverySummary]
    total: int
    limit: int
    offset: int


class DeliveryDetailView(DeliverySummary, kw_only=True):
    """One delivery: the request sent, the latest answer, and every attempt (oldest first)."""

    request_url: str | None = None
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Of the latest attempt, signatures included (they cannot be replayed elsewhere)."""
    request_body: str = ""
    """The body sent (the event envelope for webhooks)."""
    response_body: str | None = None
    attempt_log: list[AttemptDetail] = msgspec.field(default_factory=list)


class RetryQueued(msgspec.Struct, kw_only=True):
    """A retry is queued; a worker makes the attempt and the log shows it."""

    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    queued: bool = True
