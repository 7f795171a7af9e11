"""The base of the integrations whose request is one JSON POST: webhook, Slack, Discord, Zapier, Claude.

A subclass names its config Struct and its service's URL rule and writes
:meth:`JsonIntegration.body`; checking, parsing, rendering and ``Retry-After``
are written once here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Generic

import msgspec

from streams import Event

from ._config import CONFIG_FIELD, check_link_template, check_webhook_path, dump_config, parse_config, stored_config
from ._contract import ConfigT, OutgoingRequest, TransportFactory
from ._retry_after import retry_after_header

__all__ = ("JsonIntegration", "NoConfig", "WebhookRule")

_encoder: Final = msgspec.json.Encoder()


class NoConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The config of an integration that takes none."""


class WebhookRule(msgspec.Struct, frozen=True, kw_only=True):
    """The path shape of a service's webhook URLs (see :func:`check_webhook_path`)."""

    path: re.Pattern[str]
    hosts: tuple[str, ...]
    service: str
    example: str


class JsonIntegration(Generic[ConfigT]):
    """One JSON POST per event; subclasses set the class attributes and write :meth:`body`."""

    name: str
    signs: bool = True
    transport: TransportFactory | None = None
    config_type: ClassVar[type[Any]]
    """The config Struct (``ClassVar[type[ConfigT]]`` is not expressible; :meth:`load_config` is typed)."""
    content_type: ClassVar[str] = "application/json"
    url_rule: ClassVar[WebhookRule | None] = None

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """Check the URL against the service's rule and the config against its Struct; the config to store."""
        if self.url_rule is not None:
            rule = self.url_rule
            check_webhook_path(url, rule.path, rule.hosts, service=rule.service, example=rule.example)
        parsed: ConfigT = parse_config(config, self.config_type)
        link_template = getattr(parsed, "link_template", None)
        if link_template is not None:
            check_link_template(link_template, f"{CONFIG_FIELD}.link_template")
        return dump_config(self.check(parsed))

    def check(self, config: ConfigT) -> ConfigT:
        """Checks beyond the Struct's types; returns the config to store (normalised). Default: as is."""
        return config

    def load_config(self, config: ConfigT | Mapping[str, Any]) -> ConfigT:
        """The stored config as the Struct (a Struct is returned as is)."""
        parsed: ConfigT = stored_config(config, self.config_type)
        return parsed

    def body(self, event: Event, raw: bytes, config: ConfigT) -> object | None:
        """The JSON document to send for ``event`` (``bytes`` are sent as they are); ``None`` skips the event."""
        raise NotImplementedError

    def render(self, event: Event, raw: bytes, url: str, config: ConfigT | Mapping[str, Any]) -> OutgoingRequest | None:
        document = self.body(event, raw, self.load_config(config))
        if document is None:
            return None
        body = document if isinstance(document, bytes) else _encoder.encode(document)
        return OutgoingRequest(url=url, body=body, headers={"Content-Type": self.content_type})

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        return retry_after_header(headers)
