"""The compiled rules of one subscription, and the one function that applies them to an event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from integrations import INTEGRATIONS, Integration, OutgoingRequest

if TYPE_CHECKING:
    from streams import Event

    from .._messages import Subscription

__all__ = ("Prepared", "Rules", "Skip", "SkipReason", "compile_rules")

SkipReason = Literal["declined"]
"""Why an event is not sent: ``declined`` — the integration's own rule (Claude skips AI actors, …)."""


class Skip(msgspec.Struct, frozen=True):
    """Nothing is sent for this event to this subscription, and why."""

    reason: SkipReason
    detail: str = ""


class Prepared(msgspec.Struct, frozen=True):
    """The request to send for one event (its body is what is signed and recorded)."""

    request: OutgoingRequest


class Rules:
    """What one subscription sends for an event; built by :func:`compile_rules`, reused for every event."""

    __slots__ = ("config", "integration", "url")

    def __init__(self, integration: Integration[Any], config: Any, url: str) -> None:
        self.integration = integration
        self.config = config
        """The integration config, parsed once here, not per delivery."""
        self.url = url

    def prepare(self, event: Event, raw: bytes) -> Prepared | Skip:
        """The request for ``event`` (``raw``: its envelope's bytes), or why none is sent."""
        request = self.integration.render(event, raw, self.url, self.config)
        if request is None:
            return Skip("declined")
        return Prepared(request)


def compile_rules(sub: Subscription) -> Rules:
    """``sub``'s rules, compiled: its integration config parsed (and, as they land, its filter and template)."""
    integration = INTEGRATIONS[sub.integration]
    return Rules(integration, integration.load_config(sub.integration_config), sub.url)
