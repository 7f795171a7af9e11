"""Decoding never raises anything but EventValidationError: bounded depth and size; the subject decides the type."""

from __future__ import annotations

import contextlib
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import EventValidationError, build_event, decode_event, encode_event
from streams._envelope import MAX_EVENT_BYTES, MAX_EVENT_DEPTH


def _envelope(data: bytes, event_type: str = "issue.created") -> bytes:
    return (
        b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","event_type":"' + event_type.encode() + b'",'
        b'"timestamp":"2024-05-01T12:00:00Z","entity_type":"issue","entity_id":"1","action":"created",'
        b'"data":' + data + b"}"
    )


def _deep(levels: int) -> bytes:
    return b'{"current":{"x":' + b"[" * levels + b"]" * levels + b"}}"


@pytest.mark.parametrize("levels", [2_000, 100_000])
def test_deeply_nested_data_is_refused_not_a_recursion_error(levels: int) -> None:
    with pytest.raises(EventValidationError) as info:
        decode_event(_envelope(_deep(levels)))
    assert "deeper" in str(info.value) and str(MAX_EVENT_DEPTH) in str(info.value)
    with pytest.raises(EventValidationError):
        decode_event(_envelope(_deep(levels)).decode())


def test_depth_is_counted_outside_strings_only() -> None:
    # Brackets inside strings are text: a long Markdown body full of them is fine.
    text = "[" * 5_000 + "{" * 5_000
    event = build_event(event_type="issue.created", entity_id="1", data={"current": {"body": text}})
    assert decode_event(encode_event(event)).data.current["body"] == text
    escaped = build_event(event_type="issue.created", entity_id="1", data={"current": {"q": '\\"[[[' * 500}})
    assert decode_event(encode_event(escaped)) == escaped


def test_a_real_events_depth_is_far_below_the_limit() -> None:
    nested: object = "leaf"
    for _ in range(MAX_EVENT_DEPTH - 4):  # the envelope, data and current are 3 levels, the list one more
        nested = [nested]
    event = build_event(event_type="issue.created", entity_id="1", data={"current": {"x": nested}})
    assert decode_event(encode_event(event)) == event
    many = build_event(
        event_type="issue.created", entity_id="1", data={"current": {"items": [{"a": [i]} for i in range(1_000)]}}
    )
    assert decode_event(encode_event(many)) == many


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    payload = _envelope(b'{"current":{"x":"' + b"a" * MAX_EVENT_BYTES + b'"}}')
    with pytest.raises(EventValidationError) as info:
        decode_event(payload)
    assert info.value.field == "body" and "larger" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        _envelope(b'{"current":{},"extra":1}'),
        _envelope(b'{"current":{"n":1e400}}'),
        _envelope(b"{}").replace(b"2024-05-01T12:00:00Z", b"yesterday"),
        b"[]",
        b"null",
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_events_are_validation_errors(payload: bytes) -> None:
    with pytest.raises(EventValidationError):
        decode_event(payload)


def test_the_subject_decides_the_type() -> None:
    event = build_event(event_type="issue.created", entity_id="1")
    raw = encode_event(event)
    assert decode_event(raw, subject="turbo.issue.created") == event
    with pytest.raises(EventValidationError) as info:
        decode_event(raw, subject="turbo.issue.closed")
    assert info.value.field == "event_type" and "turbo.issue.closed" in str(info.value)
    outside = _envelope(b"{}", event_type="issue.exploded")
    decode_event(outside)  # without a subject: the envelope alone (the API's and tools' use)
    with pytest.raises(EventValidationError) as info:
        decode_event(outside, subject="turbo.issue.exploded")
    assert "catalog" in str(info.value)
    with pytest.raises(EventValidationError):
        decode_event(raw, subject="elsewhere.issue.created")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2_000),
        _json.map(msgspec.json.encode),
        _json.map(lambda value: _envelope(msgspec.json.encode({"current": {"v": value}}))),
        st.integers(min_value=0, max_value=5_000).map(lambda n: _envelope(_deep(n))),
        st.integers(min_value=0, max_value=5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    )
)
def test_any_bytes_decode_or_raise_a_validation_error(payload: bytes) -> None:
    with contextlib.suppress(EventValidationError):
        decode_event(payload, subject="turbo.issue.created")


def test_any_buffer_is_read() -> None:
    event = build_event(event_type="issue.created", entity_id="1")
    raw = encode_event(event)
    for payload in (raw, raw.decode(), bytearray(raw), memoryview(raw), msgspec.Raw(raw)):
        assert decode_event(payload) == event  # type: ignore[arg-type]
