"""The one reading of "a time" that the API's queries and the CLI's options share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams import EventValidationError, parse_duration

__all__ = ("parse_when",)


def parse_when(value: str, field: str, now: datetime | None = None) -> datetime:
    """``value`` as an aware UTC time: a duration before ``now`` (``2h``), or an RFC 3339 time.

    A refusal is an :class:`~streams.EventValidationError` naming ``field``.
    """
    text = value.strip()
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    except OverflowError:
        raise EventValidationError(field, f"{value!r} reaches before the year 1") from None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise EventValidationError(
            field, f"{value!r} is neither an RFC 3339 time (2026-11-29T05:07:26Z) nor a duration (30m, 2h, 7d)"
        ) from None
