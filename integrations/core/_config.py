"""Integration config: a typed Struct per integration, checked when a subscription is saved.

:func:`parse_config` turns msgspec's validation errors into
:class:`~streams.EventValidationError` naming the field as the user wrote it
(``integration_config.to[0]``); the checks every integration shares (URLs,
link templates, the path shape of a service's webhook URL) live here too.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import msgspec

from streams import EventValidationError

__all__ = (
    "CONFIG_FIELD",
    "LINK_FIELDS",
    "check_http_url",
    "check_link_template",
    "check_webhook_path",
    "dump_config",
    "parse_config",
    "stored_config",
)

CONFIG_FIELD: Final = "integration_config"

LINK_FIELDS: Final = frozenset(
    {
        "entity_type",
        "entity_id",
        "event_type",
        "event_id",
        "project_id",
        "milestone_id",
        "initiative_id",
        "issue_id",
        "comment_id",
        "document_id",
        "tag_id",
    }
)
"""Placeholders a ``link_template`` may use, e.g. ``https://turbo.example.com/{entity_type}s/{entity_id}``."""

_T = TypeVar("_T", bound=msgspec.Struct)
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _field_of(message: str) -> str:
    if " - at `$" in message:
        path = message.rsplit(" - at `$", 1)[1].rstrip("`")
        return CONFIG_FIELD + path
    for pattern in (_UNKNOWN, _MISSING):
        if match := pattern.search(message):
            return f"{CONFIG_FIELD}.{match.group(1)}"
    return CONFIG_FIELD


def stored_config(config: _T | Mapping[str, Any], kind: type[_T]) -> _T:
    """A stored (already validated) config as a ``kind``; a ``kind`` is returned as is."""
    if isinstance(config, Mapping):
        converted: _T = msgspec.convert(dict(config), kind)
        return converted
    return config


def parse_config(config: Mapping[str, Any], kind: type[_T]) -> _T:
    """``config`` as a ``kind``; :class:`EventValidationError` naming the offending field."""
    if not isinstance(config, Mapping):
        raise EventValidationError(CONFIG_FIELD, f"must be a JSON object, got {type(config).__name__}")
    try:
        return msgspec.convert(dict(config), kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise EventValidationError(_field_of(message), message.split(" - at ", 1)[0]) from None


def dump_config(config: msgspec.Struct) -> dict[str, Any]:
    """The config as stored with the subscription (defaults omitted when the Struct says so)."""
    return msgspec.to_builtins(config)  # type: ignore[no-any-return]


def check_http_url(value: str, field: str) -> str:
    """An absolute ``http(s)://`` URL with a host; returned without a trailing slash."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise EventValidationError(field, f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EventValidationError(field, f"{value!r} is not an http(s):// URL")
    if parts.username is not None or parts.password is not None:
        raise EventValidationError(field, "credentials in the URL are not allowed")
    return text.rstrip("/")


def check_link_template(template: str, field: str) -> str:
    """A link to the entity in Turbo, with ``{entity_id}``-style placeholders from :data:`LINK_FIELDS`."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise EventValidationError(field, f"is not a valid template ({exc})") from None
    unknown = sorted({n for n in names if n not in LINK_FIELDS})
    if unknown:
        raise EventValidationError(
            field, f"unknown placeholder(s) {', '.join(unknown)}; use {', '.join(sorted(LINK_FIELDS))}"
        )
    check_http_url(template.replace("{", "").replace("}", ""), field)
    return template


def check_webhook_path(url: str, path: re.Pattern[str], hosts: Iterable[str], *, service: str, example: str) -> None:
    """Refuse a destination that is not one of ``service``'s webhook URLs (by path shape).

    The path is checked on every host, so a Discord URL pasted into a Slack
    subscription is caught; other hosts than the service's own are accepted for
    proxies and local fakes (the URL rules of the engine still apply to them).
    On the service's own hosts, only https is accepted.
    """
    if not url.strip():
        raise EventValidationError("url", f"a {service} subscription needs its webhook URL, like {example}")
    parts = urlsplit(url.strip())
    if not path.match(parts.path):
        raise EventValidationError("url", f"{url!r} is not a {service} webhook URL; expected one like {example}")
    if (parts.hostname or "").lower() in set(hosts) and parts.scheme != "https":
        raise EventValidationError("url", f"{service} webhook URLs are https://, got {url!r}")
