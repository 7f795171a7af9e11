"""The log line formats and the OTLP export of spans (a real HTTP server standing for the collector)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from streams.settings import TracingSettings
from streams.telemetry import ConsoleFormatter, JsonFormatter, configure_tracing, delivery_span, shutdown_tracing
from tests.support import Receiver, wait_for


def _record(**extra: object) -> logging.LogRecord:
    record = logging.getLogger("turbohooks.worker").makeRecord(
        "turbohooks.worker", logging.WARNING, __file__, 1, "delivery %s", ("failed",), None, extra=extra
    )
    return record


def test_json_lines_carry_the_fields_and_console_lines_show_them_after_the_message() -> None:
    sub, delivery = uuid.uuid4(), uuid.uuid4()
    record = _record(subscription_id=sub, delivery_id=delivery, attempt=2, status=500, error=None, reason="x")
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "turbohooks.worker" and line["message"] == "delivery failed"
    assert line["subscription_id"] == str(sub) and line["delivery_id"] == str(delivery)
    assert line["attempt"] == 2 and line["status"] == 500 and line["error"] is None and line["reason"] == "x"
    assert line["time"].endswith("+00:00")
    console = ConsoleFormatter().format(record)
    # The delivery's fields first, in DELIVERY_FIELDS order, then the others; None left out.
    assert console.endswith(
        f"WARNING turbohooks.worker: delivery failed delivery_id={delivery} subscription_id={sub} "
        "attempt=2 status=500 reason=x"
    )
    assert ConsoleFormatter().format(_record()).endswith("WARNING turbohooks.worker: delivery failed")


async def test_spans_go_to_the_otlp_endpoint_when_it_is_set(receiver: Receiver) -> None:
    receiver.endpoint("/collector/v1/traces")
    configure_tracing(TracingSettings(enabled=True, otlp_endpoint=f"{receiver.url}/collector/"))
    try:
        span = delivery_span(
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            event_type="issue.created",
            event_id=uuid.uuid4(),
            delivery_id=uuid.uuid4(),
            subscription_id=uuid.uuid4(),
            integration="webhook",
            attempt=1,
        )
        span.end(outcome="success", status=200, latency_ms=1.0, error=None)
    finally:
        # Flushes the batch from the exporter's thread while this loop serves the collector.
        await asyncio.to_thread(shutdown_tracing)
    await wait_for(lambda: bool(receiver.at("/collector/v1/traces")), what="the OTLP export")
    (posted,) = receiver.at("/collector/v1/traces")
    assert posted.headers["Content-Type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(posted.body)
    (exported,) = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert exported.name == "deliver issue.created"
    assert exported.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert exported.parent_span_id.hex() == "00f067aa0ba902b7"
    service = {a.key: a.value.string_value for r in request.resource_spans for a in r.resource.attributes}
    assert service["service.name"] == "turbohooks"
