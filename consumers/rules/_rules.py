"""The compiled rules of one subscription, and the one function that applies them to an event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from integrations import INTEGRATIONS, Integration, OutgoingRequest

from ._templates import PayloadTemplate, RenderFailed, TemplateLimits, compile_template

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

    __slots__ = ("config", "integration", "template", "url")

    def __init__(
        self, integration: Integration[Any], config: Any, url: str, template: PayloadTemplate | None = None
    ) -> None:
        self.integration = integration
        self.config = config
        """The integration config, parsed once here, not per delivery."""
        self.url = url
        self.template = template
        """The payload template, compiled once here; it replaces the integration's body."""

    def prepare(self, event: Event, raw: bytes) -> Prepared | Skip | RenderFailed:
        """The request for ``event`` (``raw``: its envelope's bytes), or why none is sent.

        :class:`RenderFailed`: the template failed on this event (a failed attempt, nothing sent)."""
        request = self.integration.render(event, raw, self.url, self.config)
        if request is None:
            return Skip("declined")
        if self.template is not None:
            rendered = self.template.apply(event, request)
            if isinstance(rendered, RenderFailed):
                return rendered
            request = rendered
        return Prepared(request)


def compile_rules(sub: Subscription, *, limits: TemplateLimits | None = None) -> Rules:
    """``sub``'s rules, compiled: its integration config parsed, its template compiled (bounded by ``limits``).

    ``EventValidationError`` naming the field for a template that does not compile."""
    integration = INTEGRATIONS[sub.integration]
    template = (
        compile_template(sub.template, sub.template_content_type, sub.integration, limits)
        if sub.template is not None
        else None
    )
    return Rules(integration, integration.load_config(sub.integration_config), sub.url, template)
