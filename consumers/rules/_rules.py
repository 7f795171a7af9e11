"""The compiled rules of one subscription, and the one function that applies them to an event."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from integrations import INTEGRATIONS, Integration, OutgoingRequest

if TYPE_CHECKING:
    from streams import Event

    from .._messages import Subscription

__all__ = ("DEFAULT_MAX_CAUSATION_DEPTH", "Prepared", "Rules", "Skip", "SkipReason", "compile_rules", "loop_stop")

SkipReason = Literal["declined", "loop"]
"""Why an event is not sent: ``declined`` — the integration's own rule (Claude skips AI actors, …);
``loop`` — the event was caused by this subscription's own delivery, or its causation chain is
deeper than ``TURBOHOOKS_MAX_CAUSATION_DEPTH``."""

DEFAULT_MAX_CAUSATION_DEPTH: Final = 5
"""``TURBOHOOKS_MAX_CAUSATION_DEPTH``'s default."""


class Skip(msgspec.Struct, frozen=True):
    """Nothing is sent for this event to this subscription, and why."""

    reason: SkipReason
    detail: str = ""


class Prepared(msgspec.Struct, frozen=True):
    """The request to send for one event (its body is what is signed and recorded)."""

    request: OutgoingRequest


class Rules:
    """What one subscription sends for an event; built by :func:`compile_rules`, reused for every event."""

    __slots__ = ("config", "integration", "max_causation_depth", "subscription_id", "url")

    def __init__(
        self,
        integration: Integration[Any],
        config: Any,
        url: str,
        *,
        subscription_id: uuid.UUID | None = None,
        max_causation_depth: int = DEFAULT_MAX_CAUSATION_DEPTH,
    ) -> None:
        self.integration = integration
        self.config = config
        """The integration config, parsed once here, not per delivery."""
        self.url = url
        self.subscription_id = subscription_id
        self.max_causation_depth = max_causation_depth

    def prepare(self, event: Event, raw: bytes) -> Prepared | Skip:
        """The request for ``event`` (``raw``: its envelope's bytes), or why none is sent."""
        if event.chain is not None and (stop := loop_stop(event, self.subscription_id, self.max_causation_depth)):
            return stop
        request = self.integration.render(event, raw, self.url, self.config)
        if request is None:
            return Skip("declined")
        return Prepared(request)


def loop_stop(event: Event, subscription_id: uuid.UUID | None, max_depth: int) -> Skip | None:
    """``Skip("loop")`` when ``event`` must not reach the subscription: its own delivery's consequence, or too deep."""
    chain = event.chain
    if chain is None:
        return None
    if subscription_id is not None and chain.subscription_id == subscription_id:
        return Skip("loop", "caused by this subscription's own delivery")
    if chain.depth > max_depth:
        return Skip("loop", f"causation depth {chain.depth} is over TURBOHOOKS_MAX_CAUSATION_DEPTH ({max_depth})")
    return None


def compile_rules(sub: Subscription, *, max_causation_depth: int = DEFAULT_MAX_CAUSATION_DEPTH) -> Rules:
    """``sub``'s rules, compiled: its integration config parsed (and, as they land, its filter and template).

    ``max_causation_depth`` is the setting ``TURBOHOOKS_MAX_CAUSATION_DEPTH``: events
    caused by deliveries deeper than it are skipped (``loop``), as are events caused
    by this subscription's own delivery.
    """
    integration = INTEGRATIONS[sub.integration]
    return Rules(
        integration,
        integration.load_config(sub.integration_config),
        sub.url,
        subscription_id=sub.id,
        max_causation_depth=max_causation_depth,
    )
