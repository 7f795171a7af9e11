"""The retry policy, as data: which answers are retried, and after how long.

Classification of one attempt's outcome (:func:`classify`):

* ``success``: a 2xx.
* ``gone``: 410; the receiver asks to be unsubscribed (no retry).
* ``throttled``: 429, 502, 503, 504; retried, honouring ``Retry-After``.
* ``retry``: 408, every other 5xx, timeouts, connection and protocol errors.
* ``fail``: 3xx (redirects are not followed) and every other 4xx (no retry).

A throttled attempt uses up an attempt like any other failure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from integrations.core import ErrorKind, parse_retry_after
from streams._errors import EventValidationError

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = (
    "Classification",
    "ErrorKind",
    "RetryPolicy",
    "classify",
    "parse_retry_after",
)

Classification = Literal["success", "retry", "throttled", "fail", "gone"]

_THROTTLED: Final = frozenset({429, 502, 503, 504})
_RNG: Final = random.Random()


def classify(status: int | None, error_kind: ErrorKind | None) -> Classification:
    """What one attempt's outcome means; a status code, when there is one, decides over ``error_kind``."""
    if status is None:
        if error_kind == "request":
            return "fail"  # the client refused to send it: the same request would be refused again
        return "retry"  # timeout, connection or protocol error: the receiver may recover
    if 200 <= status < 300:
        return "success"
    if status == 410:
        return "gone"
    if status in _THROTTLED:
        return "throttled"
    if status == 408 or 500 <= status < 600:
        return "retry"
    if 300 <= status < 500:
        return "fail"
    return "retry"  # 1xx or a status outside HTTP's range: a misbehaving receiver, try again


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Delays before each retry, with jitter; :meth:`next_delay` schedules the next attempt."""

    delays: tuple[float, ...]
    """Seconds before retry 1, 2, ...; empty means a single attempt."""
    jitter: float = 0.2
    """Each delay is scaled by a random factor in ``[1 - jitter, 1 + jitter]``."""
    retry_after_cap: float = 3600.0
    """The longest ``Retry-After`` honoured."""

    def __post_init__(self) -> None:
        if any(not math.isfinite(d) or d < 0 for d in self.delays):
            raise EventValidationError("retry_schedule", "delays must be finite and not negative")
        if not 0 <= self.jitter < 1:
            raise EventValidationError("jitter", "must be at least 0 and below 1")
        if not self.retry_after_cap >= 0:
            raise EventValidationError("retry_after_cap", "must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings, override: Sequence[float] | None = None) -> RetryPolicy:
        """The policy of a subscription: its own schedule (``override``; empty means no retries) or the global one."""
        delays = tuple(float(d) for d in override) if override is not None else settings.retry_delays()
        return cls(delays=delays, retry_after_cap=settings.webhook_retry_after_cap)

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one per delay."""
        return 1 + len(self.delays)

    def next_delay(
        self,
        attempt: int,
        *,
        classification: Classification,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds before attempt ``attempt + 1``, now that attempt ``attempt`` (1-based) failed.

        ``None`` when nothing more is to be tried: success, ``fail``, ``gone``, or
        attempts exhausted. The scheduled delay gets jitter; for ``throttled``,
        ``Retry-After`` is honoured up to ``retry_after_cap`` but never shortens
        the (jittered) scheduled delay: ``max(scheduled, min(retry_after, cap))``.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if classification not in ("retry", "throttled") or attempt >= self.max_attempts:
            return None
        scheduled = self.delays[attempt - 1]
        if self.jitter:
            scheduled *= 1 + (rng or _RNG).uniform(-self.jitter, self.jitter)
        if classification == "throttled" and retry_after is not None:
            return max(scheduled, min(max(retry_after, 0.0), self.retry_after_cap))
        return scheduled
