"""Integrations: how an event becomes the request each destination expects."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from streams import EventValidationError

from ._base import (
    ErrorKind,
    Integration,
    OutgoingRequest,
    SendResult,
    Transport,
    TransportContext,
    TransportFactory,
)
from ._retry_after import parse_retry_after, retry_after_header
from ._webhook import WebhookIntegration

__all__ = (
    "INTEGRATIONS",
    "INTEGRATION_NAMES",
    "ErrorKind",
    "Integration",
    "OutgoingRequest",
    "SendResult",
    "Transport",
    "TransportContext",
    "TransportFactory",
    "WebhookIntegration",
    "get_integration",
    "parse_retry_after",
    "retry_after_header",
)

INTEGRATIONS: Final[MappingProxyType[str, Integration]] = MappingProxyType(
    {"webhook": WebhookIntegration()},
)
"""Every integration kind, by name."""

INTEGRATION_NAMES: Final = tuple(sorted(INTEGRATIONS))


def get_integration(name: str, *, field: str = "integration") -> Integration:
    """The integration called ``name``; refuse an unknown one naming the choices."""
    try:
        return INTEGRATIONS[name]
    except KeyError:
        raise EventValidationError(
            field, f"unknown integration {name!r}; choose one of {', '.join(sorted(INTEGRATIONS))}"
        ) from None
