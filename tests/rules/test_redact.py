"""Redaction of an event's data: names at any depth, exact paths, nothing re-encoded when nothing matches."""

from __future__ import annotations

import msgspec

from consumers.rules import REDACTED, compile_redactor
from streams import build_event, decode_event, encode_event


def test_names_at_any_depth_and_paths_exactly() -> None:
    event = build_event(
        event_type="issue.updated",
        entity_id="ISS-1",
        data={
            "current": {
                "title": "kept",
                "Password": "hunter2",
                "integration": {"settings": [{"api_key": "k-1", "url": "https://x"}], "ssn": "123"},
                "owner": {"ssn": "456"},
            },
            "previous": {"owner": {"ssn": "789"}, "token": {"nested": "object masked whole"}},
        },
    )
    redactor = compile_redactor(["data.current.owner.ssn"], ["previous.owner"])
    redacted, raw = redactor.redact(event, encode_event(event))
    body = msgspec.json.decode(raw)
    current, previous = body["data"]["current"], body["data"]["previous"]
    assert current["title"] == "kept"
    assert current["Password"] == REDACTED  # names match whatever their case
    assert current["integration"]["settings"][0] == {"api_key": REDACTED, "url": "https://x"}
    assert current["integration"]["ssn"] == "123"  # a path matches one place only
    assert current["owner"]["ssn"] == REDACTED
    assert previous == {"owner": REDACTED, "token": REDACTED}
    assert decode_event(raw) == redacted
    assert b"hunter2" not in raw and b"k-1" not in raw and b"456" not in raw and b"789" not in raw
    # The original event is untouched (it is shared by every subscription of the worker).
    assert event.data.current["Password"] == "hunter2"


def test_nothing_to_mask_returns_the_same_objects() -> None:
    event = build_event(event_type="issue.created", entity_id="ISS-2", data={"current": {"title": "token budget"}})
    raw = encode_event(event)
    # "token" appears in a value only: nothing is masked, nothing re-encoded.
    redactor = compile_redactor(["ssn"])
    same_event, same_raw = redactor.redact(event, raw)
    assert same_event is event and same_raw is raw


def test_a_path_without_a_state_masks_both_states_and_list_indexes() -> None:
    event = build_event(
        event_type="issue.updated",
        entity_id="ISS-3",
        data={"current": {"keys": ["a", "b"], "card": {"number": "4111"}}, "previous": {"card": {"number": "4000"}}},
    )
    redacted, _ = compile_redactor(["card.number", "data.current.keys.1"]).redact(event, encode_event(event))
    assert redacted.data.current == {"keys": ["a", REDACTED], "card": {"number": REDACTED}}
    assert redacted.data.previous == {"card": {"number": REDACTED}}
