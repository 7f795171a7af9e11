"""Zapier: a flat JSON object for a "Catch Hook" trigger.

Zapier maps top-level keys best, so the envelope is flattened with dotted
keys (``data.current.title``, ``actor.name``, ``context.project_id``); a list
of plain values becomes one comma-separated string, a list of objects gets
index keys (``data.current.labels.0.name``). Three keys are added for Zaps
that only want the gist: ``summary`` (a line), ``text`` (a few lines) and
``link`` (when known). Deliveries are signed like custom webhooks, so a Code
step can verify them; Zapier's 410 (Zap turned off or deleted) disables the
subscription.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from streams import Event

from .core import JsonIntegration, WebhookRule, describe, plain_text

__all__ = ("ZapierConfig", "ZapierIntegration", "flatten")

Scalar = str | int | float | bool | None

ZAPIER_HOSTS: Final = ("hooks.zapier.com",)
_PATH: Final = re.compile(r"^/hooks/catch/\d+/[A-Za-z0-9]+/?$")
_EXAMPLE: Final = "https://hooks.zapier.com/hooks/catch/123456/abcdef/"


class ZapierConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Zapier subscription's ``integration_config``."""

    link_template: str | None = None
    """Link to the entity in Turbo, sent as ``link`` when the event carries no URL."""


def flatten(value: Any, prefix: str = "", into: dict[str, Scalar] | None = None) -> dict[str, Scalar]:
    """``value`` as one level of dotted keys; lists of plain values joined with ``, ``."""
    out: dict[str, Scalar] = {} if into is None else into
    if isinstance(value, Mapping):
        if not value and prefix:
            out[prefix] = None
        for key, inner in value.items():
            flatten(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        if all(not isinstance(item, Mapping | list) for item in value):
            out[prefix] = ", ".join("" if item is None else str(item) for item in value)
        else:
            for index, item in enumerate(value):
                flatten(item, f"{prefix}.{index}", out)
    else:
        out[prefix] = value
    return out


class ZapierIntegration(JsonIntegration[ZapierConfig]):
    """The envelope, flattened, for Zapier's Catch Hook."""

    name: str = "zapier"
    config_type = ZapierConfig
    url_rule = WebhookRule(path=_PATH, hosts=ZAPIER_HOSTS, service="Zapier catch hook", example=_EXAMPLE)

    def payload(self, event: Event, raw: bytes, config: ZapierConfig | Mapping[str, Any]) -> dict[str, Scalar]:
        """The flat object sent for ``event``."""
        parsed = self.load_config(config)
        facts = describe(event, link_template=parsed.link_template)
        flat = flatten(msgspec.json.decode(raw))
        flat.update(summary=facts.summary, text=plain_text(facts), link=facts.link)
        return flat

    def body(self, event: Event, raw: bytes, config: ZapierConfig) -> dict[str, Scalar]:
        return self.payload(event, raw, config)
