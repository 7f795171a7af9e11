"""The log event of a delivery attempt: one line with the delivery's ids and answer as fields.

Fields only from the attempt's record, never its URL (a query or user info may
hold a token), headers (credentials, signatures) or bodies: what
:data:`~streams.telemetry.DELIVERY_FIELDS` names, plus ``outcome``,
``event_type``, ``trigger`` and, for a retry, ``next_attempt_at``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from .._messages import AttemptRecord

__all__ = ("attempt_fields", "log_attempt")

_MESSAGES: Final = {
    "success": (logging.DEBUG, "delivered"),
    "retrying": (logging.WARNING, "delivery attempt failed; retry scheduled"),
    "failed": (logging.WARNING, "delivery failed for good"),
}


def attempt_fields(record: AttemptRecord) -> dict[str, Any]:
    """The ``extra=`` of a log line about ``record``'s delivery."""
    fields: dict[str, Any] = {
        "event_id": record.event_id,
        "delivery_id": record.delivery_id,
        "subscription_id": record.subscription_id,
        "attempt": record.attempt,
        "status": record.response_code,
        "latency_ms": record.latency_ms,
        # An answer that failed has no transport error: its status says why, in words a grep finds.
        "error": record.error or (f"HTTP {record.response_code}" if record.outcome != "success" else None),
        "outcome": record.outcome,
        "event_type": record.event_type,
        "trigger": record.trigger,
    }
    if record.next_attempt_at is not None:
        fields["next_attempt_at"] = record.next_attempt_at
    if record.disable_subscription is not None:
        fields["disables_subscription"] = record.disable_subscription
    return fields


def log_attempt(log: logging.Logger, record: AttemptRecord) -> None:
    """Log one attempt: a failure as a warning, a success at debug (both skipped below the level)."""
    level, message = _MESSAGES.get(record.outcome, (logging.INFO, "delivery attempt"))
    if log.isEnabledFor(level):
        log.log(level, message, extra=attempt_fields(record))
