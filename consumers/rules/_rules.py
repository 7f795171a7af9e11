"""The compiled rules of one subscription, and the one function that applies them to an event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

import msgspec

from integrations import INTEGRATIONS, Integration, OutgoingRequest
from streams import EventValidationError

from ._filters import Predicate, compile_filter
from ._redact import Redactor, compile_redactor
from ._templates import PayloadTemplate, RenderFailed, TemplateLimits, compile_template

if TYPE_CHECKING:
    from streams import Event, Settings

    from .._messages import CountedSkip, Subscription

__all__ = (
    "COUNTED_SKIPS",
    "DEFAULT_MAX_CAUSATION_DEPTH",
    "Prepared",
    "Rules",
    "Skip",
    "SkipReason",
    "compile_rules",
    "counted",
    "loop_stop",
    "rules_for",
)

_log = logging.getLogger("turbohooks.worker")

SkipReason = Literal["declined", "filtered", "loop"]
"""Why an event is not sent: ``declined`` — the integration's own rule (Claude skips AI actors, …);
``filtered`` — the subscription's filter does not match it; ``loop`` — the event was caused by this
subscription's own delivery, or its causation chain is deeper than ``TURBOHOOKS_MAX_CAUSATION_DEPTH``."""

DEFAULT_MAX_CAUSATION_DEPTH: Final = 5
"""``TURBOHOOKS_MAX_CAUSATION_DEPTH``'s default."""

COUNTED_SKIPS: Final[frozenset[str]] = frozenset({"filtered", "throttled", "loop"})
"""The reasons the stats count (:data:`~consumers.CountedSkip`); ``declined`` is the integration's business."""


def counted(reason: str) -> TypeGuard[CountedSkip]:
    """Whether skips for ``reason`` are counted (``Deliverer.skipped``)."""
    return reason in COUNTED_SKIPS


class Skip(msgspec.Struct, frozen=True):
    """Nothing is sent for this event to this subscription, and why."""

    reason: SkipReason
    detail: str = ""


class Prepared(msgspec.Struct, frozen=True):
    """The request to send for one event (its body is what is signed and recorded)."""

    request: OutgoingRequest


class Rules:
    """What one subscription sends for an event; built by :func:`compile_rules`, reused for every event."""

    __slots__ = (
        "config",
        "filter",
        "integration",
        "max_causation_depth",
        "redactor",
        "subscription_id",
        "template",
        "url",
    )

    def __init__(
        self,
        integration: Integration[Any],
        config: Any,
        url: str,
        *,
        filter: Predicate | None = None,
        redactor: Redactor | None = None,
        template: PayloadTemplate | None = None,
        subscription_id: uuid.UUID | None = None,
        max_causation_depth: int = DEFAULT_MAX_CAUSATION_DEPTH,
    ) -> None:
        self.integration = integration
        self.config = config
        """The integration config, parsed once here, not per delivery."""
        self.url = url
        self.filter = filter
        """The subscription's filter, compiled; ``None``: every event of its types."""
        self.redactor = redactor or compile_redactor()
        self.template = template
        """The payload template, compiled once here; it replaces the integration's body."""
        self.subscription_id = subscription_id
        self.max_causation_depth = max_causation_depth

    def prepare(self, event: Event, raw: bytes, *, test: bool = False) -> Prepared | Skip | RenderFailed:
        """The request for ``event`` (``raw``: its envelope's bytes), or why none is sent.

        Loop prevention first (an event caused by this subscription's own delivery, or a
        chain too deep), then the filter, on the event as published; the integration and
        the template render it redacted. ``test``: a synthetic test event, sent whatever
        the filter says (it exists to check the endpoint, and would rarely match a real
        filter). :class:`RenderFailed`: the template failed on this event (a failed
        attempt, nothing sent).
        """
        if event.chain is not None and (stop := loop_stop(event, self.subscription_id, self.max_causation_depth)):
            return stop
        if self.filter is not None and not test and not self.filter(event):
            return Skip("filtered")
        event, raw = self.redactor.redact(event, raw)
        request = self.integration.render(event, raw, self.url, self.config)
        if request is None:
            return Skip("declined")
        if self.template is not None:
            rendered = self.template.apply(event, request)
            if isinstance(rendered, RenderFailed):
                return rendered
            request = rendered
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


def compile_rules(
    sub: Subscription,
    redact_fields: Sequence[str] = (),
    *,
    limits: TemplateLimits | None = None,
    max_causation_depth: int = DEFAULT_MAX_CAUSATION_DEPTH,
) -> Rules:
    """``sub``'s rules, compiled: its integration config parsed, its filter, redaction and template compiled.

    ``redact_fields``: the global list (``TURBOHOOKS_REDACT_FIELDS``), beside the built-in one and the
    subscription's; ``limits`` bound the template's render; ``max_causation_depth``
    (``TURBOHOOKS_MAX_CAUSATION_DEPTH``): events caused by deliveries deeper than it are skipped
    (``loop``), as are events caused by this subscription's own delivery. ``EventValidationError``
    naming the field for a template that does not compile.
    """
    integration = INTEGRATIONS[sub.integration]
    template = (
        compile_template(sub.template, sub.template_content_type, sub.integration, limits)
        if sub.template is not None
        else None
    )
    return Rules(
        integration,
        integration.load_config(sub.integration_config),
        sub.url,
        filter=_loaded_filter(sub),
        redactor=compile_redactor(redact_fields, sub.redact_fields),
        template=template,
        subscription_id=sub.id,
        max_causation_depth=max_causation_depth,
    )


def rules_for(sub: Subscription, settings: Settings) -> Rules:
    """``sub``'s rules under ``settings``: the global redaction list, the template's bounds, the causation depth."""
    return compile_rules(
        sub,
        settings.redact_fields,
        limits=TemplateLimits.from_settings(settings),
        max_causation_depth=settings.max_causation_depth,
    )


def _loaded_filter(sub: Subscription) -> Predicate | None:
    """The compiled filter; ``None`` (every event) for one stored before filters were checked on save.

    Such a filter was accepted and ignored then: the subscription keeps getting
    every event (nothing is lost) and the log says why, until it is updated.
    """
    if not sub.filters:
        return None
    try:
        return compile_filter(sub.filters)
    except EventValidationError as exc:
        _log.error("subscription %s: its stored filter does not compile (%s); every event is sent", sub.id, exc)
        return None
