"""The subscription's wire shapes and their rules: what a create or an update may say, and what is shown.

The admin API accepts these Structs as they are (their ``Meta`` limits are the OpenAPI schema's),
the CLI and the UI build them; :class:`SubscriptionService` applies them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from integrations.core import RESERVED_HEADERS, header_problem
from streams import EventValidationError

from .._messages import Ordering, RateLimit, SignatureScheme, Subscription
from ..secrets import is_masked, mask, mask_config, mask_headers
from ._safety import CaBundle, ClientCert, ClientKey, SignatureOption, key_fields, unsafe_character

__all__ = (
    "RESERVED_HEADER_PREFIXES",
    "UNSET",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionView",
    "check_headers",
    "check_in_flight",
    "check_name",
    "check_ordering",
    "check_rate_limit",
    "check_redact_fields",
    "check_schedule",
    "check_strict_in_flight",
    "kept_values",
    "subscription_view",
)

UNSET: Final = msgspec.UNSET

RESERVED_HEADER_PREFIXES: Final = ("webhook-", "ce-", "x-turbo-")
_RESERVED_HEADERS: Final = RESERVED_HEADERS | {"content-type", "content-length", "user-agent", "host", "connection"}
_MAX_NAME: Final = 100
_MAX_RETRIES: Final = 50
_MAX_IN_FLIGHT: Final = 1024


# The limits and descriptions of the wire fields, written once: msgspec enforces
# them when a body is decoded (the admin API accepts these Structs), the OpenAPI
# schema shows them, and the checks below give the same refusals to Python callers.
_Name = Annotated[str, Meta(max_length=_MAX_NAME, description="Unique; for people.")]
_Url = Annotated[str, Meta(max_length=2048, description="Where to deliver: https unless WEBHOOK_ALLOW_HTTP.")]
_Headers = Annotated[dict[str, str], Meta(description="Custom headers sent with every delivery.")]
_Patterns = Annotated[
    list[str],
    Meta(
        max_length=100,
        description="Event type patterns: `issue.created`, `issue.*`, `*.created`, or `*` for every event.",
        examples=[["issue.*", "comment.created"]],
    ),
]
_Schedule = Annotated[
    list[float],
    Meta(max_length=_MAX_RETRIES, description="Seconds before each retry; `null` uses the global schedule."),
]
_InFlight = Annotated[
    int, Meta(ge=1, le=_MAX_IN_FLIGHT, description="Concurrent deliveries; `null` uses the global setting.")
]
_MAX_TEMPLATE: Final = 65536
_MAX_RATE: Final = 100_000
_MAX_REDACT: Final = 100
_Filters = Annotated[
    dict[str, Any],
    Meta(
        description=(
            "Filter document on the event envelope: dotted paths, `$eq $ne $gt $gte $lt $lte $in $nin $exists "
            "$contains $startsWith $endsWith $regex`, `$and $or $not`; a bare value means `$eq`."
        ),
        examples=[{"data.current.priority": {"$in": ["high", "urgent"]}}],
    ),
]
_Template = Annotated[
    str,
    Meta(
        max_length=_MAX_TEMPLATE,
        description="Jinja2 (sandboxed) template of the request body; `null` sends the integration's own body.",
    ),
]
_ContentType = Annotated[
    str, Meta(max_length=255, description="The rendered body's content type; `null` is `application/json`.")
]
_Ordering = Annotated[
    Ordering,
    Meta(description="`none`: parallel; `strict`: one at a time in stream order; `entity`: in order per entity."),
]
_OrderingKey = Annotated[
    str, Meta(max_length=200, description="With `ordering: entity`: the key's dotted path (default `entity_id`).")
]
_Redact = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=200)]],
    Meta(max_length=_MAX_REDACT, description="Field names or dotted paths masked in this subscription's bodies."),
]
_AutoRecover = Annotated[
    bool, Meta(description="Probe a disabled subscription and re-enable it when its receiver answers 2xx.")
]


class SubscriptionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user gives to create a subscription."""

    name: _Name
    url: _Url
    event_types: _Patterns
    integration: str = "webhook"
    integration_config: dict[str, Any] = msgspec.field(default_factory=dict)
    headers: _Headers = msgspec.field(default_factory=dict)
    active: bool = True
    """``false`` creates it paused."""
    retry_schedule: _Schedule | None = None
    max_in_flight: _InFlight | None = None
    filters: _Filters | None = None
    signature: SignatureOption = "v1"
    tls_client_cert: ClientCert | None = None
    tls_client_key: ClientKey | None = None
    tls_ca_bundle: CaBundle | None = None
    template: _Template | None = None
    template_content_type: _ContentType | None = None
    rate_limit: RateLimit | None = None
    ordering: _Ordering = "none"
    ordering_key: _OrderingKey | None = None
    redact_fields: _Redact = msgspec.field(default_factory=list)
    auto_recover: _AutoRecover = True


class SubscriptionPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update: only the fields given change."""

    name: Annotated[str, Meta(max_length=_MAX_NAME)] | msgspec.UnsetType = UNSET
    url: Annotated[str, Meta(max_length=2048)] | msgspec.UnsetType = UNSET
    event_types: _Patterns | msgspec.UnsetType = UNSET
    integration_config: dict[str, Any] | msgspec.UnsetType = UNSET
    headers: _Headers | msgspec.UnsetType = UNSET
    active: bool | msgspec.UnsetType = UNSET
    """``false`` pauses, ``true`` resumes (also a disabled subscription)."""
    retry_schedule: _Schedule | msgspec.UnsetType | None = UNSET
    max_in_flight: _InFlight | msgspec.UnsetType | None = UNSET
    filters: _Filters | msgspec.UnsetType | None = UNSET
    signature: SignatureOption | msgspec.UnsetType = UNSET
    """A key pair is made the first time ``v1a`` or ``both`` is chosen."""
    tls_client_cert: ClientCert | msgspec.UnsetType | None = UNSET
    """With ``tls_client_key``; ``null`` for both removes the client certificate."""
    tls_client_key: ClientKey | msgspec.UnsetType | None = UNSET
    tls_ca_bundle: CaBundle | msgspec.UnsetType | None = UNSET
    template: _Template | msgspec.UnsetType | None = UNSET
    template_content_type: _ContentType | msgspec.UnsetType | None = UNSET
    rate_limit: RateLimit | msgspec.UnsetType | None = UNSET
    ordering: _Ordering | msgspec.UnsetType = UNSET
    ordering_key: _OrderingKey | msgspec.UnsetType | None = UNSET
    redact_fields: _Redact | msgspec.UnsetType = UNSET
    auto_recover: _AutoRecover | msgspec.UnsetType = UNSET


class SubscriptionView(msgspec.Struct, kw_only=True):
    """A subscription as shown to users: the secret only right after create or rotate.

    Credential-named header values and the integration config's credentials are masked
    (``…abcd``), but in the answers that carry the signing secret (create, rotate:
    the one answer to keep safe, shown once): sending a masked value back
    unchanged in an update keeps the stored value.
    """

    id: uuid.UUID
    name: str
    url: str
    event_types: list[str]
    integration: str
    integration_config: dict[str, Any]
    headers: dict[str, str]
    status: str
    active: bool
    disabled_reason: str | None
    filters: dict[str, Any] | None
    retry_schedule: list[float] | None
    max_in_flight: int | None
    consecutive_failures: int
    first_failure_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret_hint: str = ""
    """The signing secret masked, ``whsec_…abcd``: to tell which secret a receiver holds."""
    secret: str | msgspec.UnsetType = UNSET
    """``whsec_…``: present in the answer to create and rotate-secret, and nowhere else."""
    signature: SignatureScheme = "v1"
    public_key: str | None = None
    """``whpk_…``: the ed25519 key ``v1a`` signatures verify with (``v1a`` and ``both``); not a secret."""
    public_key_id: str | None = None
    """Its ``kid`` in ``/.well-known/turbohooks/keys`` (RFC 7638 thumbprint)."""
    previous_public_key: str | None = None
    """The key before the last rotation, still signing until ``previous_secret_expires_at``."""
    tls_client_cert: str | None = None
    tls_client_key_set: bool = False
    """Whether a client key is stored (the key itself is never shown)."""
    tls_ca_bundle: str | None = None
    template: str | None = None
    template_content_type: str | None = None
    rate_limit: RateLimit | None = None
    ordering: Ordering = "none"
    ordering_key: str | None = None
    redact_fields: list[str] = msgspec.field(default_factory=list)
    auto_recover: bool = True
    next_probe_at: datetime | None = None
    """A disabled subscription with ``auto_recover``: when its receiver is probed next."""
    probe_attempts: int = 0
    """Probes of a disabled subscription that got no 2xx so far (the backoff doubles with each)."""


def subscription_view(sub: Subscription, *, with_secret: bool = False) -> SubscriptionView:
    """The user-facing view of ``sub``, secrets masked; ``with_secret`` (just created or rotated) shows them."""
    return SubscriptionView(
        id=sub.id,
        name=sub.name,
        url=sub.url,
        event_types=sub.event_types,
        integration=sub.integration,
        integration_config=sub.integration_config if with_secret else mask_config(sub.integration_config),
        headers=sub.headers if with_secret else mask_headers(sub.headers),
        status=sub.status,
        active=sub.status == "active",
        disabled_reason=sub.disabled_reason,
        filters=sub.filters,
        retry_schedule=sub.retry_schedule,
        max_in_flight=sub.max_in_flight,
        consecutive_failures=sub.consecutive_failures,
        first_failure_at=sub.first_failure_at,
        previous_secret_expires_at=sub.previous_secret_expires_at,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
        secret_hint=mask(sub.secret) if sub.secret else "",
        secret=sub.secret if with_secret else UNSET,
        template=sub.template,
        template_content_type=sub.template_content_type,
        rate_limit=sub.rate_limit,
        ordering=sub.ordering,
        ordering_key=sub.ordering_key,
        redact_fields=list(sub.redact_fields),
        auto_recover=sub.auto_recover,
        next_probe_at=sub.next_probe_at,
        probe_attempts=sub.probe_attempts,
        **key_fields(sub, moment=datetime.now(UTC)),
    )


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise EventValidationError("name", "is required")
    if (problem := unsafe_character(cleaned)) is not None:
        raise EventValidationError("name", f"{problem}; names are shown in terminals and pages, use plain text")
    if len(cleaned) > _MAX_NAME:
        raise EventValidationError("name", f"is longer than {_MAX_NAME} characters")
    return cleaned


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        field = f"headers.{name}"
        lowered = name.lower()
        if (problem := header_problem(name, value)) is not None:
            raise EventValidationError(field, problem)
        if lowered in _RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
            raise EventValidationError(field, "is set by turbohooks itself (identity, signature or framing header)")
    return dict(headers)


def kept_values(given: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every value that is the mask of the current one replaced by it (a view sent back)."""
    kept: dict[str, Any] = {}
    for key, value in given.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            kept[key] = kept_values(value, old)
        elif is_masked(value) and isinstance(old, str) and mask(old) == value:
            kept[key] = old
        else:
            kept[key] = value
    return kept


def check_schedule(schedule: Sequence[float] | None) -> list[float] | None:
    if schedule is None:
        return None
    if len(schedule) > _MAX_RETRIES:
        raise EventValidationError("retry_schedule", f"has more than {_MAX_RETRIES} retries")
    for index, delay in enumerate(schedule):
        if not isinstance(delay, int | float) or delay < 0 or delay > 7 * 86400:
            raise EventValidationError(f"retry_schedule[{index}]", "must be a delay in seconds between 0 and 7 days")
    return [float(d) for d in schedule]


def check_in_flight(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= _MAX_IN_FLIGHT:
        raise EventValidationError("max_in_flight", f"must be between 1 and {_MAX_IN_FLIGHT}")
    return value


def check_rate_limit(limit: RateLimit | None) -> RateLimit | None:
    if limit is None:
        return None
    if not 1 <= limit.count <= _MAX_RATE:
        raise EventValidationError("rate_limit.count", f"must be between 1 and {_MAX_RATE}")
    if limit.per not in ("second", "minute"):
        raise EventValidationError("rate_limit.per", "must be 'second' or 'minute'")
    return limit


_ORDERINGS: Final = ("none", "strict", "entity")


def check_ordering(ordering: str, key: str | None) -> tuple[Ordering, str | None]:
    """The ordering mode and its key path; a key only goes with ``entity``."""
    if ordering not in _ORDERINGS:
        raise EventValidationError("ordering", "must be 'none', 'strict' or 'entity'")
    if key is not None:
        key = key.strip()
        if ordering != "entity":
            raise EventValidationError("ordering_key", "goes with ordering 'entity' only")
        if not key or any(not part for part in key.split(".")) or unsafe_character(key) is not None:
            raise EventValidationError(
                "ordering_key", "must be a dotted path such as 'entity_id' or 'context.project_id'"
            )
    return ordering, key or None  # type: ignore[return-value]


def check_strict_in_flight(ordering: str, max_in_flight: int | None) -> None:
    """Strict order sends one event at a time: a larger ``max_in_flight`` would be accepted and ignored."""
    if ordering == "strict" and max_in_flight not in (None, 1):
        raise EventValidationError("max_in_flight", "ordering 'strict' sends one at a time: leave it unset or 1")


def check_redact_fields(fields: Sequence[str]) -> list[str]:
    if len(fields) > _MAX_REDACT:
        raise EventValidationError("redact_fields", f"has more than {_MAX_REDACT} entries")
    cleaned: list[str] = []
    for index, field in enumerate(fields):
        name = field.strip()
        if not name or any(not part for part in name.split(".")) or unsafe_character(name) is not None:
            raise EventValidationError(f"redact_fields[{index}]", "must be a field name or a dotted path")
        cleaned.append(name)
    return cleaned
