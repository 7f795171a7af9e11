"""What every UI page shares: the template config and its filters, rendering, the form reader, time input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig

from streams import EventValidationError

from ..operations import parse_when

__all__ = (
    "STATIC_DIR",
    "STATIC_PATH",
    "TEMPLATE_CONFIG",
    "form_values",
    "pretty_json",
    "render",
    "when_or_none",
)

_HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = _HERE / "static"
STATIC_PATH: Final = "/ui/static"
_NAV: Final = (
    ("subscriptions", "/settings/webhooks", "Subscriptions"),
    ("deliveries", "/settings/webhooks/deliveries", "Delivery log"),
    ("analytics", "/settings/webhooks/analytics", "Analytics"),
    ("live", "/settings/webhooks/live", "Live events"),
    ("catalog", "/settings/webhooks/events", "Event catalog"),
)


def pretty_json(value: Any) -> str:
    """JSON (a document, or text that is JSON) indented for reading; other text as it is."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            document: Any = json.loads(value)
        except ValueError:
            return value
        value = document
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False, default=str)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _add_filters(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters["pretty_json"] = pretty_json
    env.filters["when"] = _when
    env.filters["ms"] = _ms
    env.filters["percent"] = _percent
    env.filters["tojson_attr"] = lambda value: json.dumps(value, default=str)
    env.globals["static"] = lambda name: f"{STATIC_PATH}/{name}"
    env.globals["NAV"] = _NAV


TEMPLATE_CONFIG: Final = TemplateConfig(
    directory=_HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_add_filters
)
"""The app's template config: the UI's Jinja2 templates (autoescaped), with its filters."""


def render(template: str, request: Request[Any, Any, Any], *, status_code: int = 200, **context: Any) -> Template:
    """A page (or an htmx fragment) rendered with the UI's common context."""
    context.setdefault("active", "")
    context["path"] = request.url.path
    return Template(template_name=template, context=context, status_code=status_code)


async def form_values(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A submitted form as ``{name: value}``, repeated names (checkboxes) as lists."""
    form = await request.form()
    values: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "_csrf_token":
            continue
        if key in values:
            existing = values[key]
            values[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            values[key] = [value] if key == "event_types" else value
    return values


def when_or_none(value: str | None, field: str) -> datetime | None:
    """A time typed in a form (``2h``, an RFC 3339 time, or a browser's ``datetime-local``); ``None`` if empty."""
    if value is None or not value.strip():
        return None
    try:
        return parse_when(value, field)
    except EventValidationError:
        raise
