"""Event type patterns as a setting: checked against the catalog when the settings are read."""

from __future__ import annotations

from .._errors import EventValidationError
from .._subjects import normalize_patterns

__all__ = ("parse_patterns",)


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma-separated subscription patterns (``issue.*,comment.created``), each known to the catalog."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        return ()
    try:
        return tuple(normalize_patterns(parts))
    except EventValidationError as exc:
        raise ValueError(exc.problem) from None
