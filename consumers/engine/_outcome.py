"""A delivery attempt's fate, as a tagged union decided in one place (:func:`decide`).

``Delivered`` (ack), ``Retry`` (nak with ``delay``: JetStream redelivers),
``Dead`` (attempts ran out or the receiver refused for good: dead letter + ack
on the live path) and ``Gone`` (410: the recorder disables the subscription,
the event stays first in line). The worker matches it once, where it settles
the message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec

from .._messages import AttemptOutcome
from ._retry import Classification, RetryPolicy

__all__ = ("Dead", "Delivered", "Gone", "Outcome", "Retry", "decide", "logged_as")


class Delivered(msgspec.Struct, frozen=True, tag=True):
    """A 2xx: acknowledge the event."""


class Retry(msgspec.Struct, frozen=True, tag=True):
    """Failed, tried again after ``delay`` seconds."""

    delay: float


class Dead(msgspec.Struct, frozen=True, tag=True):
    """Failed for good: no attempt is left, or the answer is not worth retrying."""

    reason: str


class Gone(msgspec.Struct, frozen=True, tag=True):
    """410 Gone: the receiver asks to be unsubscribed; ``reason`` is what disables the subscription."""

    reason: str


Outcome = Delivered | Retry | Dead | Gone

_DELIVERED: Final = Delivered()


def decide(
    classification: Classification,
    *,
    attempt: int,
    policy: RetryPolicy | None,
    retry_after: Callable[[], float | None],
    finished: datetime,
) -> Outcome:
    """The fate of attempt ``attempt``; ``policy`` ``None`` means one attempt (a manual retry, a replay).

    ``retry_after`` is asked only when a retry is possible (it may parse a body).
    """
    if classification == "success":
        return _DELIVERED
    if classification == "gone":
        return Gone(reason=f"the receiver answered 410 Gone at {finished:%Y-%m-%d %H:%M:%SZ}")
    if policy is None:
        return Dead(reason="one attempt only")
    delay = policy.next_delay(attempt, classification=classification, retry_after=retry_after())
    if delay is None:
        why = "attempts exhausted" if classification in ("retry", "throttled") else "refused (not retried)"
        return Dead(reason=f"{why} after attempt {attempt}")
    return Retry(delay=delay)


def logged_as(outcome: Outcome) -> AttemptOutcome:
    """The attempt's ``outcome`` in the delivery log."""
    match outcome:
        case Delivered():
            return "success"
        case Retry():
            return "retrying"
        case Dead() | Gone():
            return "failed"
