"""The custom webhook: the envelope as JSON, signed. The delivery engine's default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams import Event, EventValidationError

from ._base import OutgoingRequest, TransportFactory
from ._retry_after import retry_after_header

__all__ = ("WebhookIntegration",)


class WebhookIntegration:
    """POST the event envelope, byte for byte as stored, to the subscription's URL."""

    name: str = "webhook"
    signs: bool = True
    transport: TransportFactory | None = None

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        if config:
            raise EventValidationError(
                f"integration_config.{next(iter(config))}", "the webhook integration takes no configuration"
            )
        return {}

    def render(self, event: Event, raw: bytes, url: str, config: Mapping[str, Any]) -> OutgoingRequest:
        # The stored bytes are sent as they are: no re-encoding on the hot path,
        # and the signature covers exactly what JetStream holds.
        return OutgoingRequest(url=url, body=raw, headers={"Content-Type": "application/json"})

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        return retry_after_header(headers)
