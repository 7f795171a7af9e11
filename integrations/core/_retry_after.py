"""``Retry-After`` as services send it: delay-seconds or an HTTP date."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ("parse_retry_after", "retry_after_header")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (delay-seconds or HTTP-date); ``None`` if absent or garbage.

    A date in the past, or a negative number, is 0. A naive ``now`` is taken as UTC.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_header(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """:func:`parse_retry_after` of the ``Retry-After`` header in ``headers`` (any case)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now or datetime.now(UTC))
