"""Traces: the publish span, its context in the JetStream message, the delivery spans and the receiver's traceparent.

In-process engine (tests/support running_engine), real nats-server and receiver;
spans read from the in-process buffer every traced process keeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from consumers import verify
from streams.settings import TracingSettings
from streams.telemetry import configure_tracing, recent_spans, tracing_on
from tests.support import Receiver, Running, settled, wait_for

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def tracing() -> Iterator[None]:
    configure_tracing(TracingSettings(enabled=True))
    try:
        yield
    finally:
        configure_tracing(TracingSettings())
    assert not tracing_on()


def _ids(traceparent: str) -> tuple[str, str]:
    match = _TRACEPARENT.match(traceparent)
    assert match, traceparent
    assert int(match.group(3), 16) & 1, f"not sampled: {traceparent}"
    return match.group(1), match.group(2)


@pytest.mark.usefixtures("tracing")
async def test_one_trace_from_the_callers_traceparent_to_the_receiver_across_a_retry(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/traced-{unique}"
    sub = await running.subscribe(
        name=f"traced-{unique}", url=receiver.endpoint(path, statuses=[500, 200]), event_types=["tag.created"]
    )
    ack = await running.engine.publisher.emit(
        event_type="tag.created",
        entity_id=unique,
        traceparent=f"00-{_CALLER_TRACE}-{_CALLER_SPAN}-01",
        tracestate="vendor=abc",
    )
    await settled(running, sub.id, ack.event_id, status="success")
    requests = receiver.at(path)
    assert len(requests) == 2

    # The message in JetStream carries the publish span's context (and the caller's tracestate).
    stored = await running.engine.js.get_msg(running.engine.settings.stream_name, ack.seq)
    assert stored.headers is not None
    trace_id, publish_span_id = _ids(stored.headers["traceparent"])
    assert trace_id == _CALLER_TRACE and stored.headers["tracestate"] == "vendor=abc"

    spans = [s for s in recent_spans() if s.context.trace_id == int(_CALLER_TRACE, 16)]
    (publish,) = [s for s in spans if s.name == "publish tag.created"]
    assert publish.parent is not None and publish.parent.span_id == int(_CALLER_SPAN, 16)
    assert publish.context.span_id == int(publish_span_id, 16)
    assert publish.attributes is not None and publish.attributes["messaging.message.id"] == str(ack.event_id)

    deliveries = sorted((s for s in spans if s.name == "deliver tag.created"), key=lambda s: s.start_time or 0)
    assert len(deliveries) == 2, [s.name for s in spans]
    for attempt, (span, request) in enumerate(zip(deliveries, requests, strict=True), start=1):
        # Each attempt is a child of the publish; the receiver's traceparent names that attempt's span.
        assert span.parent is not None and span.parent.span_id == publish.context.span_id
        assert _ids(request.headers["traceparent"]) == (_CALLER_TRACE, f"{span.context.span_id:016x}")
        assert request.headers["tracestate"] == "vendor=abc"
        assert span.attributes is not None
        assert span.attributes["turbohooks.attempt"] == attempt
        assert span.attributes["turbohooks.subscription_id"] == str(sub.id)
        assert span.attributes["http.response.status_code"] == (500, 200)[attempt - 1]
        assert span.attributes["turbohooks.outcome"] == ("retrying", "success")[attempt - 1]
        assert span.status.is_ok is (attempt == 2)
        # traceparent is outside the signature: the request verifies as it did without it.
        verify(sub.secret, request.headers, request.body)


@pytest.mark.usefixtures("tracing")
async def test_an_event_emitted_without_a_traceparent_starts_its_own_trace(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/root-{unique}"
    sub = await running.subscribe(name=f"root-{unique}", url=receiver.endpoint(path), event_types=["tag.created"])
    ack = await running.engine.publisher.emit(event_type="tag.created", entity_id=unique)
    await settled(running, sub.id, ack.event_id, status="success")
    trace_id, parent_id = _ids(receiver.at(path)[0].headers["traceparent"])
    (publish,) = [
        s for s in recent_spans() if s.name == "publish tag.created" and f"{s.context.trace_id:032x}" == trace_id
    ]
    assert publish.parent is None
    (delivery,) = [s for s in recent_spans() if f"{s.context.span_id:016x}" == parent_id]
    assert delivery.parent is not None and delivery.parent.span_id == publish.context.span_id
    assert "tracestate" not in receiver.at(path)[0].headers


async def test_with_tracing_off_no_trace_header_is_written_or_sent(
    running: Running, receiver: Receiver, unique: str
) -> None:
    assert not tracing_on()
    path = f"/untraced-{unique}"
    sub = await running.subscribe(name=f"off-{unique}", url=receiver.endpoint(path), event_types=["tag.created"])
    ack = await running.engine.publisher.emit(
        event_type="tag.created", entity_id=unique, traceparent=f"00-{_CALLER_TRACE}-{_CALLER_SPAN}-01"
    )
    await wait_for(lambda: len(receiver.at(path)) == 1, what="the delivery")
    stored = await running.engine.js.get_msg(running.engine.settings.stream_name, ack.seq)
    assert "traceparent" not in (stored.headers or {})
    assert "traceparent" not in receiver.at(path)[0].headers
    await settled(running, sub.id, ack.event_id, status="success")
