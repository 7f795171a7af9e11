"""The hot path's costs: microbenchmarks of what the worker does per delivery."""

from __future__ import annotations

import time
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from consumers import AttemptRecord, WorkerMetrics, build_headers, delivery_id_for, generate_secret
from consumers.rules import compile_filter, compile_redactor, compile_template
from streams import USER_AGENT, Event, build_event, decode_event, encode_event
from streams.settings import TracingSettings
from streams.telemetry import configure_tracing, delivery_span, tracing_on

from .._results import Results, Scale
from .._traffic import sample_event, sample_fields
from ._common import GROUP, RULES_FILTER, RULES_TEMPLATE

__all__ = ("hot_path", "tracing_costs")


def _per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Best of 5 repeats of about ``seconds`` each, per call, in microseconds."""
    timer = timeit.Timer(call)
    number = 1
    while (elapsed := timer.timeit(number)) < 0.01:
        number *= 10
    number = max(1, int(number * seconds / elapsed))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def _template_call(event: Event) -> tuple[str, str, Callable[[], object] | None]:
    template = compile_template(RULES_TEMPLATE, None, "webhook")
    body = template.render(event)
    size = len(body) if isinstance(body, bytes) else 0
    return (
        "hot.templates",
        f"payload template: render a {size / 1024:.1f} KiB JSON body",
        lambda: template.render(event),
    )


def hot_path(results: Results, scale: Scale) -> None:
    event = sample_event()
    raw = encode_event(event)
    secret, previous = generate_secret(), generate_secret()
    sub_id = uuid.uuid4()
    delivery = delivery_id_for(sub_id, event.event_id)
    now = datetime.now(UTC)
    headers: dict[str, str] = {}

    def sign(secrets: list[str]) -> Callable[[], object]:
        return lambda: build_headers(
            msg_id=delivery,
            timestamp=int(time.time()),
            body=raw,
            secrets=secrets,
            event_type=event.event_type,
            event_id=event.event_id,
            event_time=event.timestamp,
            source="/turbo",
            user_agent=USER_AGENT,
            extra={"Content-Type": "application/json"},
        )

    headers = build_headers(
        msg_id=delivery,
        timestamp=int(time.time()),
        body=raw,
        secrets=[secret],
        event_type=event.event_type,
        event_id=event.event_id,
        event_time=event.timestamp,
        source="/turbo",
        user_agent=USER_AGENT,
    )
    encoder = msgspec.json.Encoder()
    calls: list[tuple[str, str, Callable[[], object] | None]] = [
        ("hot.build_event", "build_event (validate + build a ~1 KiB event)", lambda: build_event(**sample_fields())),
        ("hot.encode_event", "msgspec: encode_event", lambda: encode_event(event)),
        ("hot.decode_event", "msgspec: decode_event (the worker, per message)", lambda: decode_event(raw)),
        ("hot.sign1", "signing: build_headers, one secret", sign([secret])),
        ("hot.sign2", "signing: build_headers, two secrets (rotation)", sign([secret, previous])),
        ("hot.delivery_id", "delivery_id_for (uuid5)", lambda: delivery_id_for(sub_id, event.event_id)),
    ]
    try:
        record = AttemptRecord(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery,
            subscription_id=sub_id,
            event_id=event.event_id,
            event_type=event.event_type,
            attempt=1,
            outcome="success",
            stream_seq=1,
            request_url="http://127.0.0.1:9000/hook",
            request_headers=headers,
            payload=raw,
            response_code=200,
            response_headers={"content-length": "0"},
            response_body="",
            latency_ms=0.4,
            started_at=now,
            finished_at=now,
        )
        calls.append(("hot.record", "recording: encode the AttemptRecord (msgspec)", lambda: encoder.encode(record)))
    except (TypeError, msgspec.ValidationError) as exc:
        results.notes.append(f"recording cost not measured: AttemptRecord changed ({exc})")
    predicate = compile_filter(RULES_FILTER)
    assert predicate(event), "the sample event matches the benchmark's filter"
    calls.append(("hot.filters", "filters: a five-clause filter (compiled), per event", lambda: predicate(event)))
    results.target("filter evaluation ≤ 5 µs per event (five clauses)", "hot.filters", "<=", 5.0)
    redactor = compile_redactor()
    calls.append(
        ("hot.redact", "redaction: the built-in list, nothing to mask, per event", lambda: redactor.redact(event, raw))
    )
    metrics = WorkerMetrics()

    def count_delivery() -> None:
        # What Deliverer.attempt adds per delivery: the in-flight gauge around the send, then the answer and outcome.
        metrics.in_flight += 1
        metrics.in_flight -= 1
        metrics.answer("webhook", 200, None)
        metrics.delivery(
            "webhook", "success", seconds=0.004, request_bytes=len(raw), response_bytes=0, subscription_id=sub_id
        )

    calls.append(
        ("hot.metrics", "metrics: count one delivery (counters, 3 histograms, in-flight gauge)", count_delivery)
    )
    calls.append(_template_call(event))
    rate = results.value("product.e2e.rate")
    budget = 1e6 / rate if rate else None
    results.add(
        "hot.budget",
        GROUP,
        "time per delivery at the measured end-to-end rate (1 worker)",
        budget,
        "µs",
    )
    for key, label, call in calls:
        if call is None:
            results.add(key, GROUP, label, None, "µs", note="not implemented yet: nothing to measure")
            continue
        results.add(key, GROUP, label, _per_call_us(call, scale.pick(0.04, 0.2)), "µs", ref="hot.budget")
    tracing_costs(results, scale, event_id=event.event_id, event_type=event.event_type, delivery=delivery, sub=sub_id)


def tracing_costs(
    results: Results, scale: Scale, *, event_id: uuid.UUID, event_type: str, delivery: uuid.UUID, sub: uuid.UUID
) -> None:
    """Tracing's cost per delivery: off, the deliverer's one branch (target < 1 µs); on, a span and its headers."""

    def off() -> object:
        # What the deliverer runs per attempt with TURBOHOOKS_TRACING unset: the check, nothing else.
        return delivery_span(None, **span) if tracing_on() else None

    def on() -> object:
        traced = delivery_span(parent, **span)
        traced.end(outcome="success", status=200, latency_ms=0.4, error=None)
        return traced.headers

    span = {
        "event_type": event_type,
        "event_id": event_id,
        "delivery_id": delivery,
        "subscription_id": sub,
        "integration": "webhook",
        "attempt": 1,
    }
    parent = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    seconds = scale.pick(0.04, 0.2)
    configure_tracing(TracingSettings())
    results.add("hot.tracing_off", GROUP, "tracing off: the deliverer's check", _per_call_us(off, seconds), "µs")
    results.target("tracing off: < 1 µs per delivery", "hot.tracing_off", "<", 1.0)
    configure_tracing(TracingSettings(enabled=True))
    try:
        cost = _per_call_us(on, seconds)
    finally:
        configure_tracing(TracingSettings())
    results.add(
        "hot.tracing_on",
        GROUP,
        "tracing on: a delivery span (start, traceparent, end; no OTLP)",
        cost,
        "µs",
        ref="hot.budget",
    )
