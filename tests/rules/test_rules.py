"""Rules.prepare: the filter decides first, the body is rendered from the redacted event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from consumers import Subscription
from consumers.rules import Prepared, Skip, compile_rules
from streams import build_event, encode_event


def _sub(**fields: Any) -> Subscription:
    now = datetime.now(UTC)
    return Subscription(
        id=uuid.uuid4(),
        name="s",
        url="https://example.com/h",
        event_types=["issue.*"],
        created_at=now,
        updated_at=now,
        **fields,
    )


def test_filtered_skipped_redacted_rendered_and_test_sends_exempt() -> None:
    rules = compile_rules(_sub(filters={"data.current.priority": "high"}, redact_fields=["ssn"]), ["pin"])
    low = build_event(event_type="issue.created", entity_id="1", data={"current": {"priority": "low"}})
    assert rules.prepare(low, encode_event(low)) == Skip("filtered")
    assert isinstance(rules.prepare(low, encode_event(low), test=True), Prepared)

    high = build_event(
        event_type="issue.created", entity_id="2", data={"current": {"priority": "high", "ssn": "1", "pin": "2"}}
    )
    prepared = rules.prepare(high, encode_event(high))
    assert isinstance(prepared, Prepared)
    body = msgspec.json.decode(prepared.request.body)
    assert body["data"]["current"] == {"priority": "high", "ssn": "[redacted]", "pin": "[redacted]"}


def test_a_stored_filter_that_no_longer_compiles_sends_every_event(caplog: pytest.LogCaptureFixture) -> None:
    # Saved before filters were checked (then accepted and ignored): nothing is lost, the log says why.
    rules = compile_rules(_sub(filters={"priority": {"in": ["high"]}}))
    assert rules.filter is None
    assert "does not compile" in caplog.text
