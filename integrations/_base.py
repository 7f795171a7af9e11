"""What an integration is: a way to turn an event into the request its service expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import msgspec

from streams import Event

__all__ = ("Integration", "OutgoingRequest")


class OutgoingRequest(msgspec.Struct, kw_only=True):
    """The HTTP request an integration wants sent for one event."""

    url: str
    body: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Content headers of the integration; the engine adds identity and signature headers."""


@runtime_checkable
class Integration(Protocol):
    """One kind of destination (custom webhook, Slack, Discord, …).

    ``render`` returns ``None`` for an event the integration does not send
    (Claude skips comments written by the AI): the engine acknowledges it and
    records nothing.
    """

    name: str
    """The integration kind, as in ``--integration``: ``webhook``, ``slack``, …"""
    signs: bool
    """Whether deliveries carry the Standard Webhooks and ``X-Turbo-Signature-256`` headers."""

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """Check a subscription's integration config; raise ``EventValidationError`` naming the field."""
        ...

    def render(self, event: Event, raw: bytes, url: str, config: Mapping[str, Any]) -> OutgoingRequest | None:
        """The request for ``event``; ``raw`` is the envelope exactly as stored in the stream."""
        ...
