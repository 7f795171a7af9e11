"""The custom webhook: the envelope as JSON, signed. The delivery engine's default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams import Event, EventValidationError

from .core import JsonIntegration, NoConfig

__all__ = ("WebhookIntegration",)


class WebhookIntegration(JsonIntegration[NoConfig]):
    """POST the event envelope, byte for byte as stored, to the subscription's URL."""

    name: str = "webhook"
    config_type = NoConfig

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        if config:
            raise EventValidationError(
                f"integration_config.{next(iter(config))}", "the webhook integration takes no configuration"
            )
        return {}

    def body(self, event: Event, raw: bytes, config: NoConfig) -> bytes:
        # The stored bytes are sent as they are: no re-encoding on the hot path,
        # and the signature covers exactly what JetStream holds.
        return raw
