"""The dead letters: pages, one letter, and what redriving queued.

A letter's ``event`` is the envelope (as ``GET /api/events`` shows it) when
the bytes kept decode as one; ``raw`` holds the bytes (base64) when they do
not, and always for refused messages. The redrive answers are the operations'.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from ...operations import (
    AttemptSummary,
    DeadLetterItem,
    DeadLetterKind,
    DeadLetterList,
    DeadLetterRedriven,
    RedriveRefusal,
    SubscriptionRedrive,
)
from .events import EventEnvelope

__all__ = (
    "AttemptSummary",
    "DeadLetterPage",
    "DeadLetterRedriven",
    "DeadLetterView",
    "RedriveRefusal",
    "SubscriptionRedrive",
)


class DeadLetterView(msgspec.Struct, kw_only=True):
    """One message of the dead-letter stream."""

    seq: int
    """Its sequence in the dead-letter stream: what `GET`/`redrive` take."""
    cause: DeadLetterKind
    """`delivery_failed`: its attempts ran out. `refused`: the worker refused the message (undecodable, a type
    outside the catalog or other than its subject's). `log_refused`: an attempts message the recorder could not
    store (not redrivable). `unreadable`: not a dead letter."""
    reason: str
    subscription_id: uuid.UUID | None
    delivery_id: uuid.UUID | None
    subject: str | None
    """The event's subject in the events stream, when known."""
    source_stream: str | None
    """The stream holding the original message (`source_seq` there)."""
    source_seq: int | None
    dead_at: datetime
    event: EventEnvelope | None
    """The event envelope, when the kept bytes decode as one."""
    raw: bytes | None
    """The kept bytes, base64: when they are not an event, and always for refused messages."""
    raw_truncated: bool
    """`raw` holds only the start of the message."""
    last_attempt: AttemptSummary | None
    redrivable: bool
    note: str | None = None
    """Why it cannot be redriven, when it cannot."""

    @classmethod
    def of(cls, item: DeadLetterItem) -> DeadLetterView:
        fields = {name: getattr(item, name) for name in DeadLetterItem.__struct_fields__}
        fields["event"] = EventEnvelope.of(item.event) if item.event is not None else None
        return cls(**fields)


class DeadLetterPage(msgspec.Struct, kw_only=True):
    """Dead letters newest first; pass ``next_before_seq`` as ``before_seq`` for the next page."""

    items: list[DeadLetterView]
    scanned: int
    """Messages of the dead-letter stream read to fill this page (the `cause` filter is applied after reading)."""
    truncated: bool
    """True when the scan stopped at its cap before the range was exhausted: more may match."""
    next_before_seq: int | None = None

    @classmethod
    def of(cls, page: DeadLetterList) -> DeadLetterPage:
        return cls(
            items=[DeadLetterView.of(item) for item in page.items],
            scanned=page.scanned,
            truncated=page.truncated,
            next_before_seq=page.next_before_seq,
        )
