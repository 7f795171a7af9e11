"""Subscription management: the one door through which the CLI and the gateway change subscriptions.

Every change is validated, written to SQL, applied to the subscription's
JetStream consumer, and mirrored to the workers through the KV registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta
from nats.js import JetStreamContext

from integrations import destinations, get_integration, requires_url
from integrations.core import (
    RESERVED_HEADERS,
    ClientTls,
    generate_secret,
    generate_signing_key,
    header_problem,
    validate_destination,
)
from publishers import EventPublisher
from streams import EventValidationError, Settings, normalize_patterns

from .._messages import SignatureScheme, Subscription
from ..log import AuditStore, SubscriptionStore
from ..secrets import is_masked, mask, mask_config, mask_headers
from ._consumer import delete_consumer, ensure_consumer
from ._registry import SubscriptionRegistry
from ._safety import (
    CaBundle,
    ClientCert,
    ClientKey,
    SignatureOption,
    check_tls,
    described,
    key_fields,
    patched_tls,
    unsafe_character,
    update_action,
)

__all__ = (
    "RESERVED_HEADER_PREFIXES",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionService",
    "SubscriptionView",
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
    filters: dict[str, Any] | None = None
    signature: SignatureOption = "v1"
    tls_client_cert: ClientCert | None = None
    tls_client_key: ClientKey | None = None
    tls_ca_bundle: CaBundle | None = None


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
    filters: dict[str, Any] | msgspec.UnsetType | None = UNSET
    signature: SignatureOption | msgspec.UnsetType = UNSET
    """A key pair is made the first time ``v1a`` or ``both`` is chosen."""
    tls_client_cert: ClientCert | msgspec.UnsetType | None = UNSET
    """With ``tls_client_key``; ``null`` for both removes the client certificate."""
    tls_client_key: ClientKey | msgspec.UnsetType | None = UNSET
    tls_ca_bundle: CaBundle | msgspec.UnsetType | None = UNSET


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
        **key_fields(sub, moment=datetime.now(UTC)),
    )


def _check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise EventValidationError("name", "is required")
    if (problem := unsafe_character(cleaned)) is not None:
        raise EventValidationError("name", f"{problem}; names are shown in terminals and pages, use plain text")
    if len(cleaned) > _MAX_NAME:
        raise EventValidationError("name", f"is longer than {_MAX_NAME} characters")
    return cleaned


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        field = f"headers.{name}"
        lowered = name.lower()
        if (problem := header_problem(name, value)) is not None:
            raise EventValidationError(field, problem)
        if lowered in _RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
            raise EventValidationError(field, "is set by turbohooks itself (identity, signature or framing header)")
    return dict(headers)


def _kept(given: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every value that is the mask of the current one replaced by it (a view sent back)."""
    kept: dict[str, Any] = {}
    for key, value in given.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            kept[key] = _kept(value, old)
        elif is_masked(value) and isinstance(old, str) and mask(old) == value:
            kept[key] = old
        else:
            kept[key] = value
    return kept


def _check_schedule(schedule: Sequence[float] | None) -> list[float] | None:
    if schedule is None:
        return None
    if len(schedule) > _MAX_RETRIES:
        raise EventValidationError("retry_schedule", f"has more than {_MAX_RETRIES} retries")
    for index, delay in enumerate(schedule):
        if not isinstance(delay, int | float) or delay < 0 or delay > 7 * 86400:
            raise EventValidationError(f"retry_schedule[{index}]", "must be a delay in seconds between 0 and 7 days")
    return [float(d) for d in schedule]


def _check_in_flight(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= _MAX_IN_FLIGHT:
        raise EventValidationError("max_in_flight", f"must be between 1 and {_MAX_IN_FLIGHT}")
    return value


class SubscriptionService:
    """Create, change, pause, resume, disable, rotate and delete subscriptions."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        registry: SubscriptionRegistry,
        js: JetStreamContext,
        publisher: EventPublisher | None = None,
        *,
        audit: AuditStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.js = js
        self.publisher = publisher
        self.audit = audit
        """Where admin actions are recorded (who: :func:`~consumers.log.acting_as`); ``None`` records nothing."""

    async def _audit(self, action: str, sub: Subscription, details: Mapping[str, Any] | None = None) -> None:
        if self.audit is not None:
            await self.audit.record(action, f"subscription:{sub.id}", {"name": sub.name, **(details or {})})

    async def _check_url(self, url: str, field: str = "url") -> str:
        return await validate_destination(
            url,
            allow_http=self.settings.webhook_allow_http,
            allowed_hosts=self.settings.webhook_allowed_hosts,
            field=field,
        )

    async def _check_destinations(self, integration: Any, config: Mapping[str, Any]) -> None:
        """The integration's other URLs (GitHub's ``api_url``) pass the destination rules too."""
        for field, url in destinations(integration, config).items():
            await self._check_url(url, field)

    async def create(self, new: SubscriptionCreate) -> Subscription:
        """Validate and create; the returned subscription carries its secret (shown once)."""
        name = _check_name(new.name)
        integration = get_integration(new.integration)
        # E-mail (mailto:) and GitHub (api_url in the config) do not POST to
        # the URL; their validate_config checks it instead.
        url = await self._check_url(new.url) if requires_url(integration) else new.url.strip()
        config = integration.validate_config(new.integration_config, url)
        await self._check_destinations(integration, config)
        tls = ClientTls(client_cert=new.tls_client_cert, client_key=new.tls_client_key, ca_bundle=new.tls_ca_bundle)
        check_tls(tls, url)
        now = datetime.now(UTC)
        subscription = Subscription(
            id=uuid.uuid4(),
            name=name,
            url=url,
            event_types=normalize_patterns(new.event_types),
            integration=integration.name,
            integration_config=config,
            headers=_check_headers(new.headers),
            status="active" if new.active else "paused",
            secret=generate_secret(),
            filters=new.filters,
            retry_schedule=_check_schedule(new.retry_schedule),
            max_in_flight=_check_in_flight(new.max_in_flight),
            created_at=now,
            updated_at=now,
            signature_scheme=new.signature,
            signing_key=generate_signing_key() if new.signature != "v1" else None,
            tls_client_cert=tls.client_cert,
            tls_client_key=tls.client_key,
            tls_ca_bundle=tls.ca_bundle,
        )
        created = await self.store.create(subscription)
        try:
            await ensure_consumer(self.js, self.settings, created)
        except BaseException:
            await self.store.delete(created.id)
            raise
        await self.registry.put(created)
        await self._audit("create", created, described(created))
        return created

    async def get(self, subscription_id: uuid.UUID) -> Subscription:
        """One subscription (``NotFoundError`` if missing)."""
        return await self.store.get(subscription_id)

    async def update(self, subscription_id: uuid.UUID, patch: SubscriptionPatch) -> Subscription:
        """Apply a partial update; nothing changes if any field is refused."""
        current = await self.store.get(subscription_id)
        changes: dict[str, Any] = {}
        if patch.name is not UNSET:
            changes["name"] = _check_name(patch.name)
        if patch.url is not UNSET:
            integration = get_integration(current.integration)
            changes["url"] = await self._check_url(patch.url) if requires_url(integration) else patch.url.strip()
            if patch.integration_config is UNSET:
                integration.validate_config(current.integration_config, changes["url"])
        if patch.event_types is not UNSET:
            changes["event_types"] = normalize_patterns(patch.event_types)
        if patch.integration_config is not UNSET:
            integration = get_integration(current.integration)
            changes["integration_config"] = integration.validate_config(
                _kept(patch.integration_config, current.integration_config), changes.get("url", current.url)
            )
            await self._check_destinations(integration, changes["integration_config"])
        if patch.headers is not UNSET:
            changes["headers"] = _check_headers(_kept(patch.headers, current.headers))
        if patch.retry_schedule is not UNSET:
            changes["retry_schedule"] = _check_schedule(patch.retry_schedule)
        if patch.max_in_flight is not UNSET:
            changes["max_in_flight"] = _check_in_flight(patch.max_in_flight)
        if patch.filters is not UNSET:
            changes["filters"] = patch.filters
        if patch.signature is not UNSET:
            changes["signature_scheme"] = patch.signature
            if patch.signature != "v1" and not current.signing_key:
                changes["signing_key"] = generate_signing_key()
        changes.update(patched_tls(current, patch, changes.get("url")))
        if patch.active is not UNSET:
            if patch.active:
                changes.update(status="active", disabled_reason=None, consecutive_failures=0, first_failure_at=None)
            elif current.status == "active":
                changes["status"] = "paused"
        saved = await self._save(current, changes)
        if changes:
            # Field names, never values: headers and configs may hold credentials.
            await self._audit(update_action(changes), saved, {"fields": sorted(changes)})
        return saved

    async def _save(self, current: Subscription, changes: Mapping[str, Any]) -> Subscription:
        if not changes:
            return current
        updated = msgspec.structs.replace(current, **changes, updated_at=datetime.now(UTC))
        saved = await self.store.update(updated)
        if "event_types" in changes:
            await ensure_consumer(self.js, self.settings, saved)
        await self.registry.put(saved)
        return saved

    async def pause(self, subscription_id: uuid.UUID) -> Subscription:
        """Stop delivering; events keep accumulating in the subscription's backlog."""
        return await self.update(subscription_id, SubscriptionPatch(active=False))

    async def resume(self, subscription_id: uuid.UUID) -> Subscription:
        """Deliver again, starting with the backlog, in stream order."""
        return await self.update(subscription_id, SubscriptionPatch(active=True))

    async def disable(self, subscription_id: uuid.UUID, reason: str) -> Subscription | None:
        """Disable for a failure (auto-disable, 410 Gone), announce it as ``system.health_check_failed``.

        Returns ``None`` when it was already disabled or is gone.
        """
        try:
            current = await self.store.get(subscription_id)
        except KeyError:
            return None
        if current.status == "disabled":
            return None
        saved = await self._save(current, {"status": "disabled", "disabled_reason": reason})
        if self.publisher is not None:
            await self.publisher.emit(
                event_type="system.health_check_failed",
                entity_id=str(saved.id),
                data={
                    "current": {
                        "check": "webhook_subscription",
                        "subscription_id": str(saved.id),
                        "subscription_name": saved.name,
                        "url": saved.url,
                        "status": "disabled",
                        "reason": reason,
                        "consecutive_failures": saved.consecutive_failures,
                    }
                },
                actor={"type": "system", "name": "turbohooks-recorder"},
                # One announcement per disable, even if the recorder retries.
                event_id=uuid.uuid5(saved.id, f"disabled:{saved.updated_at.isoformat()}"),
            )
        return saved

    async def rotate_secret(self, subscription_id: uuid.UUID) -> Subscription:
        """A new secret (and ed25519 key pair); the old ones keep signing beside them for ``WEBHOOK_SECRET_GRACE``."""
        current = await self.store.get(subscription_id)
        changes: dict[str, Any] = {
            "secret": generate_secret(),
            "previous_secret": current.secret,
            "previous_secret_expires_at": datetime.now(UTC) + timedelta(seconds=self.settings.webhook_secret_grace),
        }
        if current.signing_key:
            changes.update(signing_key=generate_signing_key(), previous_signing_key=current.signing_key)
        saved = await self._save(current, changes)
        await self._audit("rotate", saved, {"grace_seconds": self.settings.webhook_secret_grace})
        return saved

    async def delete(self, subscription_id: uuid.UUID) -> None:
        """Delete the subscription, its consumer (and backlog) and its delivery log."""
        current = await self.store.get(subscription_id)
        await self.store.delete(subscription_id)
        await self.registry.delete(subscription_id)
        await delete_consumer(self.js, self.settings, current)
        await self._audit("delete", current)

    async def mirror(self) -> None:
        """Re-sync the KV registry and the consumers with SQL (on start); secrets in clear get encrypted."""
        await self.store.reseal()
        subscriptions = await self.store.all_for_mirror()
        for subscription in subscriptions:
            await ensure_consumer(self.js, self.settings, subscription)
        await self.registry.sync(subscriptions)
