"""The in-process span buffer: the exporter that keeps the newest finished spans (imported only with tracing on)."""

from __future__ import annotations

import collections
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ("KeptSpans",)


class KeptSpans(SpanExporter):
    """Appends each finished span to a bounded deque: what ``recent_spans()`` reads, OTLP or not."""

    def __init__(self, kept: collections.deque[ReadableSpan]) -> None:
        self._kept = kept

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._kept.extend(spans)
        return SpanExportResult.SUCCESS
