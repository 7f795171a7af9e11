"""The subscription form: what it shows (catalog groups, integrations' config fields) and how it is read.

A form is read into the API's own bodies (``SubscriptionCreate``,
``SubscriptionPatch``) and handed to the same ``SubscriptionService``: what the
service refuses comes back as ``{field: message}`` and is shown beside the
field it names (``integration_config.repository``, ``headers.X-Foo``…). The
service checks everything before it writes, so a refused form saves nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from consumers import Subscription, SubscriptionCreate, SubscriptionPatch
from integrations import INTEGRATIONS
from streams import KNOWN_EVENT_TYPES, ConflictError, EventValidationError

from ..api._problems import _from_msgspec
from ..operations import SubscriptionDraft

__all__ = (
    "ConfigField",
    "FormErrors",
    "SubscriptionForm",
    "catalog_groups",
    "config_fields",
    "draft_body",
    "errors_of",
    "read_form",
)

FormErrors = dict[str, str]
"""Field (as the API names it) -> what is wrong with it."""
_LIST_SPLIT: Final = re.compile(r"[,\n]")


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One field of an integration's ``integration_config``."""

    name: str
    is_list: bool
    required: bool
    default: str


def config_fields() -> dict[str, list[ConfigField]]:
    """Each integration's config fields, from its config Struct."""
    fields: dict[str, list[ConfigField]] = {}
    for name, integration in INTEGRATIONS.items():
        kind = getattr(integration, "config_type", None)
        items: list[ConfigField] = []
        if kind is not None:
            for info in msgspec.structs.fields(kind):
                is_list = info.type is list or getattr(info.type, "__origin__", None) is list
                default = info.default if isinstance(info.default, str) else ""
                items.append(ConfigField(info.name, is_list, info.required, default))
        fields[name] = items
    return fields


def catalog_groups() -> list[tuple[str, list[Any]]]:
    """The catalog's event types grouped by entity, in catalog order."""
    groups: dict[str, list[Any]] = {}
    for info in KNOWN_EVENT_TYPES.values():
        group = f"external.{info.source}" if info.source != "turbo" else info.entity_type
        groups.setdefault(group, []).append(info)
    return list(groups.items())


@dataclass(slots=True)
class SubscriptionForm:
    """What the form shows: the values typed (kept when refused) and the errors."""

    name: str = ""
    url: str = ""
    integration: str = "webhook"
    event_types: list[str] = field(default_factory=list)
    patterns: str = ""
    """Patterns beyond single types (``issue.*``, ``*``), comma separated."""
    config: dict[str, dict[str, str]] = field(default_factory=dict)
    headers: str = ""
    retry_schedule: str = ""
    max_in_flight: str = ""
    active: bool = True
    filters: str = ""
    """The filter document as JSON text."""
    template: str = ""
    template_content_type: str = ""
    rate_count: str = ""
    rate_per: str = "second"
    ordering: str = "none"
    ordering_key: str = ""
    redact_fields: str = ""
    auto_recover: bool = True

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionForm:
        singles = [p for p in sub.event_types if p in KNOWN_EVENT_TYPES]
        config = {
            key: ", ".join(value) if isinstance(value, list) else "" if value is None else str(value)
            for key, value in sub.integration_config.items()
        }
        return cls(
            name=sub.name,
            url=sub.url,
            integration=sub.integration,
            event_types=singles,
            patterns=", ".join(p for p in sub.event_types if p not in KNOWN_EVENT_TYPES),
            config={sub.integration: config},
            headers="\n".join(f"{k}: {v}" for k, v in sub.headers.items()),
            retry_schedule=", ".join(f"{s:g}" for s in sub.retry_schedule or []),
            max_in_flight="" if sub.max_in_flight is None else str(sub.max_in_flight),
            active=sub.status == "active",
            filters="" if sub.filters is None else json.dumps(sub.filters, indent=2, ensure_ascii=False),
            template=sub.template or "",
            template_content_type=sub.template_content_type or "",
            rate_count="" if sub.rate_limit is None else str(sub.rate_limit.count),
            rate_per="second" if sub.rate_limit is None else sub.rate_limit.per,
            ordering=sub.ordering,
            ordering_key=sub.ordering_key or "",
            redact_fields=", ".join(sub.redact_fields),
            auto_recover=sub.auto_recover,
        )


def _first(form: Mapping[str, Any], key: str) -> str:
    value = form.get(key, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def _all(form: Mapping[str, Any], key: str) -> list[str]:
    value = form.get(key, [])
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def _split(text: str) -> list[str]:
    return [part.strip() for part in _LIST_SPLIT.split(text) if part.strip()]


def _text(form: Mapping[str, Any], key: str) -> str:
    """A textarea's value as typed (line ends made ``\n``: template line numbers are the user's)."""
    value = form.get(key, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).replace("\r\n", "\n")


def read_form(form: Mapping[str, Any]) -> SubscriptionForm:
    """The typed values of a submitted form (``form`` maps a name to a value or a list of values)."""
    integration = _first(form, "integration") or "webhook"
    config: dict[str, dict[str, str]] = {}
    for key in form:
        prefix, _, rest = str(key).partition(".")
        if prefix == "config" and "." in rest:
            kind, _, name = rest.partition(".")
            config.setdefault(kind, {})[name] = _first(form, str(key))
    return SubscriptionForm(
        name=_first(form, "name"),
        url=_first(form, "url"),
        integration=integration,
        event_types=_all(form, "event_types"),
        patterns=_first(form, "patterns"),
        config=config,
        headers=str(form.get("headers", "") if not isinstance(form.get("headers"), list) else form["headers"][0]),
        retry_schedule=_first(form, "retry_schedule"),
        max_in_flight=_first(form, "max_in_flight"),
        active=_first(form, "active") in ("on", "true", "1"),
        filters=_text(form, "filters"),
        template=_text(form, "template"),
        template_content_type=_first(form, "template_content_type"),
        rate_count=_first(form, "rate_count"),
        rate_per=_first(form, "rate_per") or "second",
        ordering=_first(form, "ordering") or "none",
        ordering_key=_first(form, "ordering_key"),
        redact_fields=_first(form, "redact_fields"),
        auto_recover=_first(form, "auto_recover") in ("on", "true", "1"),
    )


def _headers(text: str, errors: FormErrors) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            errors["headers"] = f"line {number}: write one header per line as 'Name: value'"
            continue
        headers[name.strip()] = value.strip()
    return headers


def _body(typed: SubscriptionForm, known: Sequence[ConfigField], errors: FormErrors) -> dict[str, Any]:
    config: dict[str, Any] = {}
    given = typed.config.get(typed.integration, {})
    for item in known:
        text = given.get(item.name, "")
        if item.is_list:
            if text:
                config[item.name] = _split(text)
        elif text:
            config[item.name] = text
    body: dict[str, Any] = {
        "name": typed.name,
        "url": typed.url,
        "event_types": [*typed.event_types, *_split(typed.patterns)],
        "integration_config": config,
        "headers": _headers(typed.headers, errors),
        "retry_schedule": None,
        "max_in_flight": None,
    }
    if typed.retry_schedule:
        try:
            body["retry_schedule"] = [float(part) for part in _split(typed.retry_schedule)]
        except ValueError:
            errors["retry_schedule"] = "write seconds separated by commas: 1, 5, 30"
    if typed.max_in_flight:
        try:
            body["max_in_flight"] = int(typed.max_in_flight)
        except ValueError:
            errors["max_in_flight"] = "write a whole number, or leave it empty for the global setting"
    if not body["event_types"]:
        errors["event_types"] = "pick at least one event type, or write a pattern such as issue.*"
    body.update(_rules(typed, errors))
    return body


def _rules(typed: SubscriptionForm, errors: FormErrors) -> dict[str, Any]:
    """The fields of conditional delivery: filter, template, rate limit, ordering, redaction, auto-recover."""
    rules: dict[str, Any] = {
        "filters": None,
        "template": typed.template if typed.template.strip() else None,
        "template_content_type": typed.template_content_type or None,
        "rate_limit": None,
        "ordering": typed.ordering,
        "ordering_key": typed.ordering_key or None,
        "redact_fields": _split(typed.redact_fields),
        "auto_recover": typed.auto_recover,
    }
    if typed.filters.strip():
        try:
            rules["filters"] = json.loads(typed.filters)
        except json.JSONDecodeError as exc:
            errors["filters"] = f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        else:
            if not isinstance(rules["filters"], dict):
                errors["filters"] = 'write a JSON object such as {"data.current.priority": "high"}'
    if typed.rate_count:
        try:
            rules["rate_limit"] = {"count": int(typed.rate_count), "per": typed.rate_per}
        except ValueError:
            errors["rate_limit"] = "write a whole number of deliveries, or leave it empty for no limit"
    return rules


def draft_body(typed: SubscriptionForm, errors: FormErrors, *, limit: int) -> SubscriptionDraft | None:
    """The preview draft of a form (nothing is saved); ``None`` with ``errors`` when it cannot be one."""
    body = _body(typed, config_fields().get(typed.integration, []), errors)
    if errors:
        return None
    draft = {
        key: body[key]
        for key in ("event_types", "integration_config", "url", "filters", "template", "template_content_type")
    }
    try:
        return msgspec.convert(
            {**draft, "integration": typed.integration, "redact_fields": body["redact_fields"], "limit": limit},
            SubscriptionDraft,
        )
    except msgspec.ValidationError as exc:
        errors.update(errors_of(exc))
        return None


def create_body(typed: SubscriptionForm, errors: FormErrors) -> SubscriptionCreate | None:
    """The create body of a form; ``None`` (with ``errors`` filled) when it cannot be one."""
    body = _body(typed, config_fields().get(typed.integration, []), errors)
    body["integration"] = typed.integration
    body["active"] = typed.active
    if errors:
        return None
    try:
        return msgspec.convert(body, SubscriptionCreate)
    except msgspec.ValidationError as exc:
        errors.update(errors_of(exc))
        return None


def patch_body(typed: SubscriptionForm, integration: str, errors: FormErrors) -> SubscriptionPatch | None:
    """The update body of an edit form (the integration cannot change); ``None`` with ``errors`` when refused."""
    typed.integration = integration
    body = _body(typed, config_fields().get(integration, []), errors)
    if errors:
        return None
    try:
        return msgspec.convert(body, SubscriptionPatch)
    except msgspec.ValidationError as exc:
        errors.update(errors_of(exc))
        return None


def errors_of(exc: Exception) -> FormErrors:
    """The ``{field: message}`` of a refusal, as the API's problem document would name them."""
    if isinstance(exc, EventValidationError):
        return {exc.field: exc.problem}
    if isinstance(exc, msgspec.ValidationError):
        found = _from_msgspec(str(exc))
        return {found.field: found.message}
    if isinstance(exc, ConflictError):
        return {"name" if "name" in str(exc) else "form": str(exc)}
    return {"form": str(exc)}
