"""Subscriptions' bodies and pages; replay's body; the operations' answers.

The create and update bodies are the service's own Structs
(``SubscriptionCreate``, ``SubscriptionPatch``), whose fields and limits are
written once in ``consumers``: the subclasses only give the OpenAPI schema its
names and descriptions. The answers of test-send, recover and replay are the
operations' results.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from consumers import SubscriptionCreate, SubscriptionPatch, SubscriptionView

from ...operations import (
    DeliveryTestResult,
    PreviewItem,
    PreviewResult,
    RecoverResult,
    ReplayItem,
    ReplayResult,
    SubscriptionDraft,
)

__all__ = (
    "DeliveryTestResult",
    "PreviewBody",
    "PreviewItem",
    "PreviewResult",
    "RecoverResult",
    "ReplayBody",
    "ReplayItem",
    "ReplayResult",
    "SubscriptionCreateBody",
    "SubscriptionPage",
    "SubscriptionUpdateBody",
)

Seq = Annotated[int, Meta(ge=1, le=2**63 - 1, description="A stream sequence number (the first event is 1).")]
When = Annotated[
    str,
    Meta(
        max_length=64,
        description="An RFC 3339 time (`2026-11-29T05:07:26Z`) or a duration before now (`30m`, `2h`, `7d`).",
        examples=["2h", "2026-11-29T05:07:26Z"],
    ),
]
Patterns = Annotated[
    list[str],
    Meta(
        max_length=100,
        description="Event type patterns: `issue.created`, `issue.*`, `*.created`, or `*` for every event.",
        examples=[["issue.*", "comment.created"]],
    ),
]


class SubscriptionCreateBody(SubscriptionCreate, kw_only=True, forbid_unknown_fields=True):
    """A new subscription. The answer carries its signing secret, shown this once."""


class SubscriptionUpdateBody(SubscriptionPatch, kw_only=True, forbid_unknown_fields=True):
    """A partial update: only the fields given change. ``active: false`` pauses, ``true`` resumes."""


class PreviewBody(SubscriptionDraft, kw_only=True, forbid_unknown_fields=True):
    """A draft subscription (nothing is saved): its patterns, integration, filters, template and redaction,
    and how many of the newest matching stored events to run it on."""


class SubscriptionPage(msgspec.Struct, kw_only=True):
    """A page of subscriptions, oldest first."""

    items: list[SubscriptionView]
    total: int
    limit: int
    offset: int


class ReplayBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which stored events to deliver again to one subscription: a time or a sequence range."""

    since: When | None = None
    until: When | None = None
    from_seq: Seq | None = None
    to_seq: Seq | None = None
    event_types: Patterns | None = None
    """Narrow to these patterns (intersected with the subscription's own)."""
    dry_run: bool = False
    """List what would be sent; queue nothing."""
