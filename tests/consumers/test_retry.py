"""The retry policy: classification, schedules with jitter, Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from consumers.engine._retry import Classification, ErrorKind, RetryPolicy, classify, parse_retry_after
from streams import EventValidationError, Settings


@pytest.mark.parametrize(
    ("status", "error_kind", "expected"),
    [
        (200, None, "success"),
        (201, None, "success"),
        (204, None, "success"),
        (299, None, "success"),
        (410, None, "gone"),
        (429, None, "throttled"),
        (502, None, "throttled"),
        (503, None, "throttled"),
        (504, None, "throttled"),
        (500, None, "retry"),
        (501, None, "retry"),
        (599, None, "retry"),
        (408, None, "retry"),
        (None, "timeout", "retry"),
        (None, "connect", "retry"),
        (None, "protocol", "retry"),
        (301, None, "fail"),
        (302, None, "fail"),
        (304, None, "fail"),
        (400, None, "fail"),
        (401, None, "fail"),
        (403, None, "fail"),
        (404, None, "fail"),
        (422, None, "fail"),
        (200, "timeout", "success"),  # the answer arrived; the body read timed out
    ],
)
def test_classify(status: int | None, error_kind: ErrorKind | None, expected: Classification) -> None:
    assert classify(status, error_kind) == expected


def test_default_schedule_doubles_with_jitter() -> None:
    policy = RetryPolicy.from_settings(Settings(webhook_retry_count=3, webhook_retry_delay=5))
    assert policy.delays == (5.0, 10.0, 20.0)
    assert policy.max_attempts == 4
    assert policy.retry_after_cap == 3600.0
    rng = random.Random(7)
    for attempt, base in ((1, 5.0), (2, 10.0), (3, 20.0)):
        seen = [policy.next_delay(attempt, classification="retry", rng=rng) for _ in range(200)]
        values = [v for v in seen if v is not None]
        assert len(values) == 200
        assert all(base * 0.8 <= v <= base * 1.2 for v in values)
        assert max(values) - min(values) > base * 0.2, "jitter spreads the delays"


def test_without_jitter_the_schedule_is_exact() -> None:
    policy = RetryPolicy(delays=(1.0, 2.0), jitter=0)
    assert policy.next_delay(1, classification="retry") == 1.0
    assert policy.next_delay(2, classification="throttled") == 2.0


def test_explicit_schedule_from_settings() -> None:
    settings = Settings(webhook_retry_schedule=(5.0, 300.0, 1800.0, 7200.0), webhook_retry_after_cap=60.0)
    policy = RetryPolicy.from_settings(settings)
    assert policy.delays == (5.0, 300.0, 1800.0, 7200.0)
    assert policy.max_attempts == 5
    assert policy.retry_after_cap == 60.0


def test_subscription_override_wins() -> None:
    settings = Settings(webhook_retry_count=3, webhook_retry_delay=5)
    assert RetryPolicy.from_settings(settings, [1, 2]).delays == (1.0, 2.0)
    single = RetryPolicy.from_settings(settings, [])
    assert single.max_attempts == 1
    assert single.next_delay(1, classification="retry") is None


def test_exhaustion_returns_none() -> None:
    policy = RetryPolicy(delays=(1.0, 2.0, 4.0))
    assert policy.next_delay(3, classification="retry") is not None
    assert policy.next_delay(4, classification="retry") is None
    assert policy.next_delay(9, classification="throttled", retry_after=1) is None


@pytest.mark.parametrize("classification", ["success", "fail", "gone"])
def test_no_retry_for_final_outcomes(classification: Classification) -> None:
    assert RetryPolicy(delays=(1.0,)).next_delay(1, classification=classification) is None


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy(delays=(1.0,)).next_delay(0, classification="retry")


def test_retry_after_is_honoured_for_throttled_within_the_cap() -> None:
    policy = RetryPolicy(delays=(5.0, 10.0), jitter=0, retry_after_cap=120.0)
    assert policy.next_delay(1, classification="throttled", retry_after=60.0) == 60.0
    assert policy.next_delay(1, classification="throttled", retry_after=1.0) == 5.0, "never below the schedule"
    assert policy.next_delay(1, classification="throttled", retry_after=99999.0) == 120.0, "capped"
    assert policy.next_delay(1, classification="throttled", retry_after=None) == 5.0
    assert policy.next_delay(1, classification="retry", retry_after=60.0) == 5.0, "only throttled honours it"


def test_cap_never_shortens_the_schedule() -> None:
    policy = RetryPolicy(delays=(600.0,), jitter=0, retry_after_cap=60.0)
    assert policy.next_delay(1, classification="throttled", retry_after=3600.0) == 600.0


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(EventValidationError) as caught:
        RetryPolicy(delays=(5.0, -1.0))
    assert caught.value.field == "retry_schedule"
    with pytest.raises(EventValidationError):
        RetryPolicy(delays=(float("inf"),))
    with pytest.raises(EventValidationError):
        RetryPolicy(delays=(1.0,), jitter=1.5)


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 30 ", 30.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 99 Foo 2024", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_with_naive_now() -> None:
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", NOW.replace(tzinfo=None)) == 30.0
