"""Logs and traces: the JSON or console log lines of every process, and OpenTelemetry spans when asked for.

Standard-library logging throughout: every module keeps its
``logging.getLogger(...)`` and says its fields with ``extra=``
(:data:`DELIVERY_FIELDS`); :func:`configure_logging` picks the line format.
Tracing (:func:`configure_tracing`) loads OpenTelemetry only when it is on;
off, :func:`tracing_on` is the whole cost of a delivery.
"""

from ._logs import DELIVERY_FIELDS, ConsoleFormatter, JsonFormatter, configure_logging
from ._tracing import (
    TRACE_HEADERS,
    DeliverySpan,
    configure_tracing,
    delivery_span,
    publish_span,
    recent_spans,
    shutdown_tracing,
    tracing_on,
)

__all__ = (
    "DELIVERY_FIELDS",
    "TRACE_HEADERS",
    "ConsoleFormatter",
    "DeliverySpan",
    "JsonFormatter",
    "configure_logging",
    "configure_tracing",
    "delivery_span",
    "publish_span",
    "recent_spans",
    "shutdown_tracing",
    "tracing_on",
)
