"""The event contract: catalog, envelope, subjects, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from streams import (
    EVENT_CATALOG,
    CausationChain,
    Event,
    EventValidationError,
    build_event,
    causation_token,
    decode_event,
    encode_event,
    event_subject,
    event_type_of_subject,
)

DESIGN_SECTIONS = {
    "project": 6,
    "issue": 16,
    "milestone": 7,
    "initiative": 5,
    "comment": 4,
    "document": 4,
    "tag": 3,
    "literature": 3,
    "terminal": 3,
    "calendar": 2,
    "system": 6,  # the design's 5 and system.health_check_recovered (the end of an alert)
}


def test_catalog_has_every_event_of_the_design() -> None:
    counts: dict[str, int] = {}
    for info in EVENT_CATALOG.values():
        counts[info.entity_type] = counts.get(info.entity_type, 0) + 1
        assert info.event_type == f"{info.entity_type}.{info.action}"
        assert info.trigger and info.description
    assert counts == DESIGN_SECTIONS
    assert len(EVENT_CATALOG) == 59


@pytest.mark.parametrize(
    ("event_type", "subject"),
    [
        ("issue.created", "turbo.issue.created"),
        ("calendar.event_starting_soon", "turbo.calendar.event_starting_soon"),
        ("system.daily_digest", "turbo.system.daily_digest"),
    ],
)
def test_subject_is_turbo_plus_type(event_type: str, subject: str) -> None:
    assert event_subject(event_type) == subject
    assert event_type_of_subject(subject) == event_type
    assert build_event(event_type=event_type, entity_id="x").subject == subject


@pytest.mark.parametrize("event_type", list(EVENT_CATALOG))
def test_every_type_round_trips(event_type: str) -> None:
    event = build_event(
        event_type=event_type,
        entity_id=uuid.uuid4(),
        data={"current": {"title": "T", "n": 1.5, "tags": ["a"]}, "previous": {"title": "S"}, "changes": ["title"]},
        context={"project_id": "p-1", "issue_id": "i-1"},
        actor={"type": "user", "name": "ada@example.com", "metadata": {"ip": "10.0.0.1"}},
        causation_id=uuid.uuid4(),
    )
    decoded = decode_event(encode_event(event))
    assert decoded == event
    info = EVENT_CATALOG[event_type]
    assert (decoded.entity_type, decoded.action) == (info.entity_type, info.action)


def test_envelope_matches_the_design_shape() -> None:
    event = build_event(event_type="issue.created", entity_id=42, data={"current": {"title": "Bug in login"}})
    doc = msgspec.json.decode(encode_event(event))
    assert set(doc) >= {
        "event_id",
        "event_type",
        "timestamp",
        "entity_type",
        "entity_id",
        "action",
        "actor",
        "data",
        "context",
        "schema_version",
    }
    assert doc["entity_id"] == "42"
    assert doc["timestamp"].endswith("Z"), "RFC 3339 in UTC"
    assert datetime.fromisoformat(doc["timestamp"]).tzinfo is not None
    assert doc["data"] == {"current": {"title": "Bug in login"}, "previous": None, "changes": []}
    assert doc["actor"]["type"] == "system"
    uuid.UUID(doc["event_id"])


def test_timestamps_are_normalised_to_utc() -> None:
    from datetime import timedelta, timezone

    local = datetime(2025, 10, 15, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    event = build_event(event_type="issue.created", entity_id="1", timestamp=local)
    assert event.timestamp == datetime(2025, 10, 15, 14, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"event_type": "issue.exploded", "entity_id": "1"}, "event_type", "unknown event type"),
        ({"event_type": "", "entity_id": "1"}, "event_type", "unknown event type"),
        ({"event_type": "issue.created", "entity_id": None}, "entity_id", "required"),
        ({"event_type": "issue.created", "entity_id": "  "}, "entity_id", "required"),
        ({"event_type": "issue.created", "entity_id": 1.5}, "entity_id", "string, integer or UUID"),
        ({"event_type": "issue.created", "entity_id": "1", "data": [1, 2]}, "data", "JSON object"),
        ({"event_type": "issue.created", "entity_id": "1", "data": "text"}, "data", "JSON object"),
        ({"event_type": "issue.created", "entity_id": "1", "data": {"current": 3}}, "data.current", "object"),
        ({"event_type": "issue.created", "entity_id": "1", "data": {"surprise": 1}}, "data", "unknown field"),
        ({"event_type": "issue.created", "entity_id": "1", "data": {"current": {"x": object()}}}, "data", "JSON"),
        ({"event_type": "issue.created", "entity_id": "1", "actor": {"type": "robot"}}, "actor.type", "robot"),
        ({"event_type": "issue.created", "entity_id": "1", "context": {"planet": "mars"}}, "context", "planet"),
        ({"event_type": "issue.created", "entity_id": "1", "entity_type": "project"}, "entity_type", "issue"),
        ({"event_type": "issue.created", "entity_id": "1", "event_id": "not-a-uuid"}, "event_id", "UUID"),
        (
            {"event_type": "issue.created", "entity_id": "1", "timestamp": datetime(2025, 1, 1)},
            "timestamp",
            "time zone",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(kwargs: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(EventValidationError) as info:
        build_event(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{field}:")


def test_decode_refuses_broken_payloads() -> None:
    with pytest.raises(EventValidationError, match="body"):
        decode_event(b"{not json")
    with pytest.raises(EventValidationError) as info:
        decode_event(b'{"event_id": "x"}')
    assert "event_id" in str(info.value) or "required" in str(info.value)


def test_decoder_ignores_fields_it_does_not_know() -> None:
    """Older consumers keep reading events from a newer schema."""
    event = build_event(event_type="tag.created", entity_id="t")
    doc = msgspec.json.decode(encode_event(event))
    doc["added_in_v2"] = {"anything": True}
    assert decode_event(msgspec.json.encode(doc)) == event
    assert isinstance(decode_event(msgspec.json.encode(doc)), Event)


def test_the_causation_token_of_a_delivery_sets_the_chain_of_its_reply() -> None:
    sub_id = uuid.uuid4()
    cause = build_event(event_type="issue.created", entity_id="1")
    token = causation_token(cause, sub_id)
    assert token == f"{cause.event_id};depth=1;subscription={sub_id}"
    reply = build_event(event_type="comment.created", entity_id="c", causation=token)
    assert reply.causation_id == cause.event_id
    assert reply.chain == CausationChain(depth=1, subscription_id=sub_id)
    deeper = build_event(event_type="issue.updated", entity_id="1", causation=causation_token(reply, uuid.uuid4()))
    assert deeper.chain is not None and deeper.chain.depth == 2
    assert decode_event(encode_event(deeper)) == deeper
    plain = msgspec.json.decode(encode_event(cause))
    assert plain["chain"] is None, "an event no delivery caused has no chain"


@pytest.mark.parametrize(
    ("causation", "fragment"),
    [
        ("not-a-uuid;depth=1", "not a UUID"),
        (f"{uuid.uuid4()};depth=x", "not a whole number"),
        (f"{uuid.uuid4()};depth=0", "1 or more"),
        (f"{uuid.uuid4()};colour=red", "depth=<n> or subscription=<id>"),
        (f"{uuid.uuid4()};subscription=nope", "not a UUID"),
    ],
)
def test_a_bad_causation_is_refused_naming_it(causation: str, fragment: str) -> None:
    with pytest.raises(EventValidationError) as info:
        build_event(event_type="issue.created", entity_id="1", causation=causation)
    assert info.value.field == "causation" and fragment in str(info.value)


def test_causation_and_a_different_causation_id_are_refused() -> None:
    token = f"{uuid.uuid4()};depth=1"
    with pytest.raises(EventValidationError) as info:
        build_event(event_type="issue.created", entity_id="1", causation=token, causation_id=uuid.uuid4())
    assert info.value.field == "causation_id"
