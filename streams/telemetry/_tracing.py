"""OpenTelemetry spans of publishes and delivery attempts, and the W3C trace context that links them.

Off (the default) this module imports nothing of OpenTelemetry and
:func:`tracing_on` is a global read: the worker branches on it once per
attempt. On, a private :class:`TracerProvider` (never the global one, so an
application that embeds the publisher keeps its own) records every span; the
last :data:`_KEPT` are kept in-process (:func:`recent_spans`) and, when an
OTLP endpoint is set, a batch processor exports them over OTLP/HTTP.

The context travels as ``traceparent``/``tracestate``: from the caller of
``emit`` into the headers of the JetStream publish, from the JetStream
message into the delivery span, and from that span to the receiver's request.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ..settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = (
    "TRACE_HEADERS",
    "DeliverySpan",
    "configure_tracing",
    "delivery_span",
    "publish_span",
    "recent_spans",
    "shutdown_tracing",
    "tracing_on",
)

TRACE_HEADERS: Final = ("traceparent", "tracestate")
"""The W3C Trace Context headers, on JetStream messages and on requests to receivers."""
_KEPT: Final = 4096
"""Finished spans kept in memory (the newest), exported or not."""
_EXPORT_TIMEOUT: Final = 3.0
"""Seconds one OTLP export may take."""


class _State:
    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self.provider: TracerProvider | None = None
        self.kept: collections.deque[ReadableSpan] = collections.deque(maxlen=_KEPT)


_state: Final = _State()


def tracing_on() -> bool:
    """Whether spans are recorded (``TURBOHOOKS_TRACING``): the one check the hot path makes."""
    return _state.tracer is not None


def configure_tracing(settings: TracingSettings, *, service: str = "turbohooks") -> None:
    """Turn tracing on or off for this process (idempotent; the previous provider is shut down)."""
    shutdown_tracing()
    if not settings.enabled:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from ._kept import KeptSpans

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _state.kept.clear()
    provider.add_span_processor(SimpleSpanProcessor(KeptSpans(_state.kept)))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT means it: the traces signal's path is added.
        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        # Bounded, so that a process stopping with the collector down exits within seconds, spans lost.
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=_EXPORT_TIMEOUT)
        provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=_EXPORT_TIMEOUT * 1000))
    _state.provider = provider
    _state.tracer = provider.get_tracer("turbohooks")


def shutdown_tracing() -> None:
    """Export what is pending and stop tracing (also run at exit)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


atexit.register(shutdown_tracing)


def recent_spans() -> Sequence[ReadableSpan]:
    """The finished spans of this process, oldest first (at most the last 4,096)."""
    return tuple(_state.kept)


def _tracer() -> Tracer:
    tracer = _state.tracer
    if tracer is None:
        raise RuntimeError("turbohooks: tracing is off; check tracing_on() first")
    return tracer


def _parent(carrier: Mapping[str, str] | None) -> Any:
    """The context a carrier's ``traceparent`` names; None (a new trace) when it has none or it is malformed."""
    if not carrier or "traceparent" not in carrier:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier)


def _headers(span: Span) -> dict[str, str]:
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    return carrier


@contextlib.contextmanager
def publish_span(
    event_type: str, event_id: str, subject: str, *, traceparent: str | None = None, tracestate: str | None = None
) -> Iterator[dict[str, str]]:
    """The span of one publish, a child of ``traceparent`` when given; yields the headers that carry it on."""
    from opentelemetry.trace import SpanKind, StatusCode

    carrier = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier["tracestate"] = tracestate
    span = _tracer().start_span(
        f"publish {event_type}",
        context=_parent(carrier),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": event_id,
            "turbohooks.event_type": event_type,
        },
    )
    try:
        yield _headers(span)
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        span.end()


class DeliverySpan:
    """The span of one delivery attempt; :attr:`headers` go on the request to the receiver."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.headers = _headers(span)

    def end(self, *, outcome: str, status: int | None, latency_ms: float | None, error: str | None) -> None:
        """Close the span with the attempt's answer (an outcome other than success marks it an error)."""
        from opentelemetry.trace import StatusCode

        span = self.span
        span.set_attribute("turbohooks.outcome", outcome)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if latency_ms is not None:
            span.set_attribute("turbohooks.latency_ms", latency_ms)
        if outcome != "success":
            span.set_status(StatusCode.ERROR, (error or outcome)[:200])
        span.end()


def delivery_span(
    parent: Mapping[str, str] | None,
    *,
    event_type: str,
    event_id: uuid.UUID,
    delivery_id: uuid.UUID,
    subscription_id: uuid.UUID,
    integration: str,
    attempt: int,
) -> DeliverySpan:
    """Start the span of an attempt, a child of the trace context in ``parent`` (the JetStream message's headers)."""
    from opentelemetry.trace import SpanKind

    span = _tracer().start_span(
        f"deliver {event_type}",
        context=_parent(parent),
        kind=SpanKind.CLIENT,
        attributes={
            # Ids, never the URL: a destination may carry credentials in its query or user info.
            "turbohooks.event_id": str(event_id),
            "turbohooks.delivery_id": str(delivery_id),
            "turbohooks.subscription_id": str(subscription_id),
            "turbohooks.integration": integration,
            "turbohooks.attempt": attempt,
        },
    )
    return DeliverySpan(span)
