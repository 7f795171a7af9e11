"""The log line formats: readable console lines (development) or one JSON object a line (production).

Why the standard library and not structlog: every module already logs through
``logging.getLogger``; a formatter that renders a record's ``extra=`` fields
keeps those modules as they are, adds no dependency, and a message below the
level costs what it always did (``isEnabledFor``, cached), nothing more.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

__all__ = ("DELIVERY_FIELDS", "ConsoleFormatter", "JsonFormatter", "configure_logging")

DELIVERY_FIELDS: Final = ("event_id", "delivery_id", "subscription_id", "attempt", "status", "latency_ms", "error")
"""The fields of a delivery's log events (``extra=``), in the order console lines show them."""

# The attributes every LogRecord has: what is not among them came from ``extra=``.
# (uvicorn's color_message is its message again, with terminal colours.)
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}
_CONSOLE: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_encoder: Final = msgspec.json.Encoder(enc_hook=str)  # UUIDs and datetimes natively; anything else as its str()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …``: the extra fields after the message, the delivery's first."""

    def __init__(self) -> None:
        super().__init__(_CONSOLE)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        order = sorted(fields, key=lambda k: DELIVERY_FIELDS.index(k) if k in DELIVERY_FIELDS else len(DELIVERY_FIELDS))
        tail = " ".join(f"{k}={fields[k]}" for k in order if fields[k] is not None)
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {tail}{newline}{rest}"


def configure_logging(level: str, format: str = "console") -> None:
    """The root logger writes ``level`` and above to stderr, as JSON (``format="json"``) or console lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
