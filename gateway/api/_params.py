"""Query parameters and values several routes share: the engine, paging, times, windows, NUL checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Final

from litestar.di import NamedDependency
from litestar.params import QueryParameter

from consumers import Engine
from streams import EventValidationError, parse_duration

from ._metrics import GatewayMetrics

__all__ = ("EngineDep", "Limit", "MetricsDep", "Offset", "When", "parse_window", "refuse_nul")

_MAX_OFFSET: Final = 2**31 - 1

EngineDep = NamedDependency[Engine]
"""The engine the app was created over (dependency ``engine``)."""
MetricsDep = NamedDependency[GatewayMetrics]
"""The app's metrics (dependency ``gateway_metrics``)."""
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="At most this many items (1-500).")]
Offset = Annotated[int, QueryParameter(ge=0, le=_MAX_OFFSET, description="Skip this many items.")]
When = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="An RFC 3339 time (`2026-11-29T05:07:26Z`; UTC when it has no offset) "
        "or a duration before now (`30m`, `2h`, `7d`).",
    ),
]


def parse_window(value: str, field: str = "window") -> float:
    """A positive duration in seconds, of at most 10 years."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise EventValidationError(field, str(exc)) from None
    if not 0 < seconds <= 3650 * 86400:
        raise EventValidationError(field, f"{value!r} must be longer than 0 and at most 3650d")
    return seconds


def refuse_nul(value: object, field: str = "") -> None:
    """Refuse NUL characters anywhere in ``value``: PostgreSQL text and JSONB cannot store them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise EventValidationError(field or "body", "contains a NUL character")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refuse_nul(key, field or "body")
            refuse_nul(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            refuse_nul(item, f"{field}[{index}]")
